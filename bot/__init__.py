"""The Telegram front end of stylebot."""
