"""Event buses: in-process (embedded) and Redis (production) behind ``EventBus``."""
