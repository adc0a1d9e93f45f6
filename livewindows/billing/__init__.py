"""The reference billing consumer: window records into `disconnect_windows` and `input_totals`."""
