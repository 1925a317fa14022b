"""`hyperzero explore RUN_DIR`: a local web page to steer a trained model through context space.

Move a slider per varied context feature; the page generates the policy for that context, rolls it
out in the real environment, and shows the clip, the return, the reward per step and (for methods
with a value head) Q̂(s0, π̂(s0)) beside the realised discounted return. See docs/explore.md.

    from hyperzero.explore import ExploreConfig, running_server, serve
    serve("runs/tiny", ExploreConfig(port=0))          # blocks; prints the address

The web dependencies are optional: pip install "hyperzero[explore]".
"""
from hyperzero.explore.config import ExploreConfig
from hyperzero.explore.run import ExploreRun
from hyperzero.explore.server import running_server, serve

__all__ = ["ExploreConfig", "ExploreRun", "running_server", "serve"]
