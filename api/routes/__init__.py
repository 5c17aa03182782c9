"""Routers by resource; api.app includes them all."""
