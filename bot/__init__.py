"""sora-bot: a Discord bot that turns a prompt into a video through an OpenAI-compatible video gateway."""

__version__ = "0.1.0"
