"""JavaScript components and `trellis new` projects on a real lattice with wadm."""

from tests.wadm_e2e.conftest import controllers, wadm_client  # noqa: F401 (fixtures)
