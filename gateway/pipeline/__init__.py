"""The request pipeline and the interface of its stages: `pipeline.Pipeline` runs a policy version's
stages in order (`stage.Stage`: each feature's, placed by slot), then forwards to the pool."""
