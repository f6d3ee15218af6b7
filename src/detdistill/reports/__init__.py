"""Tables, plots and the demo's HTML page."""
