"""One module per task; each defines a `Task` subclass registered with `robot_si.envs.registry.register`."""
