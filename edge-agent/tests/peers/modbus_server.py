# Modbus peer for the edge-agent tests: serves register-map profiles with pymodbus over Modbus TCP
# or Modbus RTU (a serial port, e.g. one end of a socat pty pair). Encodes values on its own
# (independently of the Rust code) from the profile TOML: every type, word order and byte order.
#
# Usage: modbus_server.py --tcp 127.0.0.1:PORT | --rtu /dev/pts/N [--baud 9600 --parity N]
#                         --device UNIT:PROFILE.toml:VALUES.json [--device ...] [--dead-while UNIT:PATH ...]
# Over RTU a unit named by --dead-while is silent (no response at all, as a dead slave on RS-485)
# while PATH exists, and answers again once it is removed.
# VALUES.json maps value names (canonical or vendor `x_...`) to engineering values. Prints "ready" on stdout when serving.
import argparse
import asyncio
import inspect
import json
import os
import struct
import sys
import tomllib

import pymodbus
from pymodbus.datastore import ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.exceptions import NoSuchIdException

try:  # pymodbus >= 3.10 renamed slave to device
    from pymodbus.datastore import ModbusDeviceContext as DeviceContext
except ImportError:  # pragma: no cover - older pymodbus 3.x
    from pymodbus.datastore import ModbusSlaveContext as DeviceContext
from pymodbus.server import ModbusSerialServer, StartAsyncTcpServer

try:
    from pymodbus import FramerType

    RTU_FRAMER = {"framer": FramerType.RTU}
except ImportError:  # pragma: no cover
    from pymodbus.framer import ModbusRtuFramer

    RTU_FRAMER = {"framer": ModbusRtuFramer}

TABLE_SIZE = 1024


def words_of(register, defaults, value):
    """The 16-bit words (or one bit) a register holds for an engineering value."""
    scale = register.get("scale", 1.0)
    offset = register.get("offset", 0.0)
    raw = (value - offset) / scale
    kind = register["type"]
    word_order = register.get("word_order", defaults.get("word_order", "big"))
    byte_order = register.get("byte_order", defaults.get("byte_order", "big"))

    def swap(word):
        if byte_order == "little":
            return ((word & 0xFF) << 8) | (word >> 8)
        return word

    def split(bits32):
        hi, lo = swap(bits32 >> 16), swap(bits32 & 0xFFFF)
        return [hi, lo] if word_order == "big" else [lo, hi]

    if kind == "u16":
        return [swap(int(round(raw)) & 0xFFFF)]
    if kind == "i16":
        return [swap(struct.unpack("<H", struct.pack("<h", int(round(raw))))[0])]
    if kind == "u32":
        return split(int(round(raw)) & 0xFFFFFFFF)
    if kind == "i32":
        return split(struct.unpack("<I", struct.pack("<i", int(round(raw))))[0])
    if kind == "f32":
        return split(struct.unpack("<I", struct.pack("<f", raw))[0])
    if kind == "bit":
        return [swap((1 if round(raw) else 0) << register["bit"])]
    if kind == "bool":
        return [1 if round(raw) else 0]
    raise ValueError(f"unknown type {kind}")


def device_context(profile_path, values_path):
    with open(profile_path, "rb") as f:
        profile = tomllib.load(f)
    with open(values_path) as f:
        values = json.load(f)
    tables = {k: [0] * TABLE_SIZE for k in ("coil", "discrete", "input", "holding")}
    for register in profile.get("register", []):
        name = register["name"]
        if name not in values:
            continue
        words = words_of(register, profile, values[name])
        table = tables[register["kind"]]
        address = register["address"]
        if register["type"] == "bit":
            table[address] |= words[0]
        else:
            for i, word in enumerate(words):
                table[address + i] = word
    # pymodbus adds 1 to every request address before it reaches a data block (Modbus
    # "register 1" numbering), so a block starting at 1 serves PDU address 0 at index 0.
    return DeviceContext(
        co=ModbusSequentialDataBlock(1, [bool(v) for v in tables["coil"]]),
        di=ModbusSequentialDataBlock(1, [bool(v) for v in tables["discrete"]]),
        ir=ModbusSequentialDataBlock(1, tables["input"]),
        hr=ModbusSequentialDataBlock(1, tables["holding"]),
    )


def server_context(devices):
    try:
        return ModbusServerContext(devices=devices, single=False)
    except TypeError:  # pragma: no cover - older pymodbus 3.x
        return ModbusServerContext(slaves=devices, single=False)


class Silencer:
    """Wraps the datastore a server answers from: a unit in `dead` (unit -> flag file) does not
    exist while its flag file exists, so a server that ignores missing units sends nothing."""

    def __init__(self, inner, dead):
        self.inner = inner
        self.dead = dead

    def _check(self, unit):
        path = self.dead.get(unit)
        if path is not None and os.path.exists(path):
            raise NoSuchIdException(f"unit {unit} is dead while {path} exists")

    async def async_getValues(self, device_id, *args, **kwargs):
        self._check(device_id)
        return await self.inner.async_getValues(device_id, *args, **kwargs)

    async def async_setValues(self, device_id, *args, **kwargs):
        self._check(device_id)
        return await self.inner.async_setValues(device_id, *args, **kwargs)

    def __getitem__(self, device_id):  # older pymodbus 3.x looks units up this way
        self._check(device_id)
        return self.inner[device_id]

    def __getattr__(self, name):
        return getattr(self.inner, name)


def ignore_missing():
    """The server keyword that makes missing units silent, by this pymodbus's name for it."""
    parameters = inspect.signature(ModbusSerialServer.__init__).parameters
    for name in ("ignore_missing_devices", "ignore_missing_slaves"):
        if name in parameters:
            return {name: True}
    return {}  # pragma: no cover


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tcp")
    parser.add_argument("--rtu")
    parser.add_argument("--baud", type=int, default=9600)
    parser.add_argument("--parity", default="N")
    parser.add_argument("--device", action="append", required=True)
    parser.add_argument("--dead-while", action="append", default=[])
    args = parser.parse_args()
    devices = {}
    for spec in args.device:
        unit, profile, values = spec.split(":", 2)
        devices[int(unit)] = device_context(profile, values)
    dead = {}
    for spec in args.dead_while:
        unit, path = spec.split(":", 1)
        dead[int(unit)] = path
    context = server_context(devices)
    print(f"ready pymodbus {pymodbus.__version__}", flush=True)
    if args.tcp:
        host, port = args.tcp.rsplit(":", 1)
        await StartAsyncTcpServer(context=context, address=(host, int(port)))
    elif args.rtu:
        server = ModbusSerialServer(
            context,
            port=args.rtu,
            baudrate=args.baud,
            parity=args.parity,
            bytesize=8,
            stopbits=1,
            **RTU_FRAMER,
            **ignore_missing(),
        )
        if dead:
            server.context = Silencer(server.context, dead)
        await server.serve_forever()
    else:
        sys.exit("give --tcp HOST:PORT or --rtu DEVICE")


asyncio.run(main())
