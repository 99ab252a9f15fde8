"""Backend pools: endpoints, load balancing, health, outlier ejection and the forwarding client."""
