"""The web page the product's users open: static files, the routes only the page needs, and CORS."""

from service.web.routes import web_routes

__all__ = ["web_routes"]
