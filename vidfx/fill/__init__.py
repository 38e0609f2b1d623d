"""Video object removal: the ``fill`` node, its masks, models and evaluation."""
