"""``python -m geoseg`` is the ``geoseg`` command."""

from geoseg.cli.main import main

main()
