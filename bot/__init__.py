"""The telewatch bot: python-telegram-bot v22 in front of the archive.

Entry point: :func:`bot.app.run_bot`. Imports nothing from ``telegram`` at package import, so
``import bot`` stays cheap; the CLI imports :mod:`bot.app` lazily inside its commands.
"""
