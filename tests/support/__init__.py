"""Shared test helpers: loopback servers, socket audit, fixture trees."""
