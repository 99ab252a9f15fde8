"""Pipeline stages. `gateway.pipeline` lists them in order."""
