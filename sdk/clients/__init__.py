"""Clients of bundles outside Python: the Android demo (:mod:`.android`), the shared test vectors (:mod:`.vectors`)."""
