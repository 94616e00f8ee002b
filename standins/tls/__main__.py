"""Run the TLS stand-in as a provider plugin (the engine starts `pulumi-resource-tls`, which runs this)."""
import sys

from ..server import serve
from . import make_provider

serve(make_provider(), sys.argv[1:])
