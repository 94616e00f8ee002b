"""Run the AWS stand-in as a provider plugin (the engine starts `pulumi-resource-aws`, which runs this)."""
import sys

from ..server import serve
from . import make_provider

serve(make_provider(), sys.argv[1:])
