import sys

from lab.paths import REPO

# The app is not an installed package: it is copied into the image as /app.
sys.path.insert(0, str(REPO / "app"))
