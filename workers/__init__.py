"""dramatiq actors and the provider modules behind them. One worker pool per provider account."""
