"""MUSIG: the GraphSAGE mean aggregators, the task heads and losses, and the feature spec."""
