"""robot_si: a self-improvement pipeline for vision-language-action robot policies."""

__version__ = "0.1.0"
