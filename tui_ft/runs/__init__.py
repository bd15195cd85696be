"""Run directories: status, events, checkpoints; launching and stopping runners."""
