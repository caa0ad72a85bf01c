"""Ray at the edges: data-parallel training (Ray Train) and, later, the sharded optimiser."""
