"""Training several runs at once: the process pool that experiments, CrossWeigh and sweeps
share (`pool`)."""
