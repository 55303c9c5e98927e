"""Training: state, objectives (CE, MinSim, MaxSim, PCL), optimizer, pure steps, the resumable loop.

`avjax.train.loop.train_and_evaluate(config, workdir, sources, transforms)` trains one run."""
