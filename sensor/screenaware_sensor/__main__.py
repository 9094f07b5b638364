"""``python -m screenaware_sensor``."""

from screenaware_sensor.cli import main

raise SystemExit(main())
