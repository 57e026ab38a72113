"""How models train: the one training loop, the batched engine, the models, seeding and argument checks."""
