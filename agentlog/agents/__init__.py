"""Agent workers: the processes that join documents and annotate them."""
