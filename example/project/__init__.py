"""The example shop's Django project: settings, URLs and log formatting."""
