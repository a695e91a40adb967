"""Small shared helpers of the stages: output ownership, atomic writes, progress, memory settings.

They are building blocks, not the user API: import them from their modules
(``geoseg.utils.outputs``, ``atomic``, ``progress``, ``checks``, ``memory``).
"""

__all__: list[str] = []
