"""estatelens: tell what real-estate listing photos show."""
__version__ = "0.1.0"
