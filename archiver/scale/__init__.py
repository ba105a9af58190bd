"""The scaled mode: scheduler, workers, tasks, frontier, shared host turns, shipping."""
