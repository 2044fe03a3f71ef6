"""kefu's core: events, dialogue, understanding, store, desk, scheduler, server and CLI."""
