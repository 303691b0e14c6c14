"""The pure training core: torch and numpy only, no HTTP, SQL, Redis or Celery."""
