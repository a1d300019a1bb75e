"""Where uploads are kept between the web service and the workers (today: a local directory)."""
