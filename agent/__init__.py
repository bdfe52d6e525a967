"""vin-agent: read vehicle VINs from camera frames on the edge and publish them over MQTT."""

import os as _os

__version__ = "0.1.0"

# OpenCV reads this once, at its import: a pixel cap that backs up the header
# checks in agent.imageio for formats whose size is not sniffed there.
_os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(50_000_000))
