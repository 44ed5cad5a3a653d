"""Snakepit's Pool as a test double, in the parts Snakepit's own pool has (docs/pool.md, "The parts").

state.py (fields, timings, errors)  routing.py (checkout, affinity)  queue.py  checkin.py (a freed worker)
lifecycle.py (start, death, restart, escalation)  health.py (the worker's RPC line, health pings, heartbeat)
shutdown.py (stop, RuntimeCleanup)  emulator.py (PoolEmulator: the parts together, start/stop, observation)

"""

from contract_tests.elixir.pool.emulator import PoolEmulator as PoolEmulator
from contract_tests.elixir.pool.state import AFFINITY_MODES as AFFINITY_MODES
from contract_tests.elixir.pool.state import ERROR_KINDS as ERROR_KINDS
from contract_tests.elixir.pool.state import HealthPing as HealthPing
from contract_tests.elixir.pool.state import PoolError as PoolError
from contract_tests.elixir.pool.state import PoolTimings as PoolTimings
from contract_tests.elixir.pool.state import Routed as Routed
