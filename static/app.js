// The jitgate web UI (see issue: approval web UI).
