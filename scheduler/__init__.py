"""The scheduler role (APScheduler): status sweeps, pending payments, balances. See issue 7."""
