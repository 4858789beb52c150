"""The web page the product's users open: `/`, its static files and `/config.json` (see `page.py`)."""
