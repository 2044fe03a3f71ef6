"""kefu's channel adapters, one module per platform: rest, webchat, terminal, telegram, slack."""
