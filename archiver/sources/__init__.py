"""Sources: each turns what Telegram gives into archiver.models objects."""
