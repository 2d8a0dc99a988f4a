"""LightningDataModules: one per dataset, shared by the tasks that train on it."""
