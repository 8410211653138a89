"""The LightningModules that wrap the model objects, and their DataModules. They never touch the store."""
