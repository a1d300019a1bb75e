"""The core: settings, archive reading, preprocessing, model backends, database models and storage."""
