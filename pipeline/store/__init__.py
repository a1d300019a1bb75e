"""The database layer: engine, schema and migrations, jobs, API keys, reports, statistics, benchmark rows."""
