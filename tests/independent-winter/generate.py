#!/usr/bin/env python3
"""Independent winter telemetry generator for rural Yanqing (Beijing).

Written from first principles, without reading the project's rules or simulator. Python 3
standard library only; the output is a deterministic function of the command-line arguments.

Outputs (in --out):
  telemetry.jsonl  wire::Telemetry JSON lines (v=1) in global event-time order
  devices.json     device registry for `rules backtest --devices`
  truth.json       ground truth: faults (with complaint times), traps, weather episodes

See README.md for what is modelled, the ranges used and where they come from.
"""

import argparse
import json
import math
import os
import random
import sys
from datetime import datetime, timedelta, timezone

DT = 60                      # physics step, s
CPW = 4186.0                 # specific heat of water, J/(kg K)
BJ = timezone(timedelta(hours=8))
LAT, LON = 40.47, 115.97     # Yanqing town
SPIN_DAYS = 1                # simulated before the output starts, to settle the houses
HOUR = 3600
DAY = 86400
INF = float("inf")

TOWNSHIPS = [
    ("yanqing", ["dongguan", "jiangjiabao", "shuangying"]),
    ("yongning", ["beiguan", "chengxiyuan", "nanguanying"]),
    ("kangzhuang", ["xiaopuzi", "dahuangzhuang"]),
    ("jiuxian", ["baihequan", "shanxianzhai"]),
    ("zhangshanying", ["shangbanquan", "xiabanquan"]),
]

# Register-map profiles: which values each brand's map exposes, with its quantisation.
PROFILES = {
    "indep-hp-a": dict(kind="heat_pump", room=0.5, room_on_box=True, outdoor=0.5, water=0.1,
                       setpoint="room", discharge=1.0, suction=0.1, dis_p=None, coil=0.5,
                       meter=True, heat_out=True, freq=True, current=True, runtime=1.0,
                       flow_switch=True,
                       codes={"water_flow": (3, "E03 water flow switch open"),
                              "low_pressure": (7, "E07 low pressure protection"),
                              "discharge_overheat": (9, "E09 discharge temperature too high")}),
    "indep-hp-b": dict(kind="heat_pump", room=0.1, room_on_box=False, outdoor=0.1, water=0.5,
                       setpoint="room", discharge=None, suction=None, dis_p=None, coil=0.5,
                       meter=True, heat_out=False, freq=True, current=False, runtime=0.1,
                       flow_switch=False,
                       codes={"water_flow": (103, "flow protection"),
                              "low_pressure": (202, "P2 low pressure"),
                              "discharge_overheat": (205, "P5 exhaust overheat")}),
    "indep-hp-c": dict(kind="heat_pump", room=None, room_on_box=False, outdoor=0.5, water=0.1,
                       setpoint="flow", discharge=0.1, suction=0.1, dis_p=0.1, coil=None,
                       meter=False, heat_out=True, freq=True, current=True, runtime=0.1,
                       flow_switch=True,
                       codes={"water_flow": (21, "water flow failure"),
                              "low_pressure": (34, "low pressure switch"),
                              "discharge_overheat": (36, "discharge overheat")}),
    "indep-boiler-a": dict(kind="gas_boiler", room=0.1, outdoor=0.5, water=0.1, setpoint="room",
                           pressure=0.1, fan=True, flue=1.0, gas=None, electric=False, dhw=None,
                           codes={"ignition_failure": (1, "E01 no flame detected"),
                                  "low_water_pressure": (10, "E10 water pressure too low")}),
    "indep-boiler-b": dict(kind="gas_boiler", room=None, outdoor=None, water=0.5, setpoint="flow",
                           pressure=0.1, fan=False, flue=0.5, gas=None, electric=False, dhw=0.5,
                           codes={"ignition_failure": (28, "F28 no ignition"),
                                  "low_water_pressure": (22, "F22 dry fire / low pressure")}),
    "indep-boiler-c": dict(kind="gas_boiler", room=0.5, outdoor=0.5, water=0.1, setpoint="room",
                           pressure=None, fan=True, flue=0.1, gas=0.1, electric=True, dhw=None,
                           codes={"ignition_failure": (133, "E133 ignition failed"),
                                  "low_water_pressure": (119, "E119 water pressure switch"),
                                  "gas_supply": (135, "E135 gas supply pressure low")}),
}

# Device faults: kind -> (device kind, count per 3000 device-days)
DEVICE_FAULTS = [
    ("hp_pump_seized", "heat_pump", 4),
    ("hp_controller_dead", "heat_pump", 4),
    ("hp_breaker_trip", "heat_pump", 5),
    ("hp_fan_failure", "heat_pump", 3),
    ("hp_refrigerant_slow_leak", "heat_pump", 4),
    ("hp_valve_closed", "heat_pump", 2),
    ("hp_hung_controller", "heat_pump", 3),
    ("hp_filter_clog_flow_lockout", "heat_pump", 2),
    ("hp_fast_leak_lp_lockout", "heat_pump", 2),
    ("comms_outage_frost", "any", 5),
    ("gb_pump_seized", "gas_boiler", 3),
    ("gb_thermostat_dead", "gas_boiler", 3),
    ("gb_frozen_condensate", "gas_boiler", 3),
    ("gb_slow_water_leak", "gas_boiler", 3),
    ("gb_hung_controller", "gas_boiler", 2),
    ("gb_valve_closed", "gas_boiler", 1),
    ("gb_regulator_frozen", "gas_boiler", 2),
    ("gb_electrode_wear", "gas_boiler", 2),
]
DESIGNED_CODED = {"hp_filter_clog_flow_lockout", "hp_fast_leak_lp_lockout",
                  "gb_regulator_frozen", "gb_electrode_wear"}


# --------------------------------------------------------------------------- physics helpers

_R410A = [(-60, 0.65), (-50, 1.09), (-40, 1.75), (-30, 2.70), (-20, 4.00), (-10, 5.73),
          (0, 7.98), (10, 10.85), (20, 14.4), (30, 18.8), (40, 24.2), (50, 30.7),
          (60, 38.4), (70, 47.9)]
_R410A_LN = [(t, math.log(p)) for t, p in _R410A]


def psat_r410a(t):
    """Saturation pressure of R410A, bar absolute (log-linear between table points)."""
    tab = _R410A_LN
    if t <= tab[0][0]:
        return math.exp(tab[0][1])
    for i in range(1, len(tab)):
        if t <= tab[i][0]:
            t0, l0 = tab[i - 1]
            t1, l1 = tab[i]
            return math.exp(l0 + (l1 - l0) * (t - t0) / (t1 - t0))
    return math.exp(tab[-1][1])


def rho_v_water(t):
    """Saturation vapour density over water, g/m3 (Magnus)."""
    e = 6.112 * math.exp(17.62 * t / (243.12 + t))
    return e * 100.0 / (461.5 * (t + 273.15)) * 1000.0


def rho_v_ice(t):
    """Saturation vapour density over ice, g/m3 (Magnus, ice)."""
    e = 6.112 * math.exp(22.46 * t / (272.62 + t))
    return e * 100.0 / (461.5 * (t + 273.15)) * 1000.0


def relax(x, x_eq, tau):
    """First-order exact step of dx/dt = (x_eq - x)/tau over DT."""
    if tau <= 0:
        return x_eq
    return x_eq + (x - x_eq) * math.exp(-DT / tau)


def quant(x, step):
    v = round(x / step) * step
    return round(v, 2)


def diurnal_shape(h):
    """-1 at 07:00, +1 at 14:30 local, cosine pieces (continental winter day)."""
    if 7.0 <= h < 14.5:
        return -math.cos(math.pi * (h - 7.0) / 7.5)
    s = (h - 14.5) % 24.0
    return math.cos(math.pi * s / 16.5)


def solar(ts_local):
    """(elevation deg, south-facade incidence cosine, air mass) at a local datetime."""
    doy = ts_local.timetuple().tm_yday
    decl = -23.44 * math.cos(2 * math.pi * (doy + 10) / 365.0)
    b = 2 * math.pi * (doy - 81) / 364.0
    eot = 9.87 * math.sin(2 * b) - 7.53 * math.cos(b) - 1.5 * math.sin(b)   # minutes
    clock = ts_local.hour + ts_local.minute / 60.0 + ts_local.second / 3600.0
    tsol = clock + (LON - 120.0) / 15.0 + eot / 60.0
    ha = math.radians(15.0 * (tsol - 12.0))
    la, de = math.radians(LAT), math.radians(decl)
    sin_el = math.sin(la) * math.sin(de) + math.cos(la) * math.cos(de) * math.cos(ha)
    el = math.degrees(math.asin(max(-1.0, min(1.0, sin_el))))
    az = math.atan2(math.sin(ha), math.cos(ha) * math.sin(la) - math.tan(de) * math.cos(la))
    cos_inc = math.cos(math.radians(el)) * math.cos(az)
    return el, cos_inc


# --------------------------------------------------------------------------- weather

class Weather:
    """Outdoor temperature, humidity, cloud and south-facade irradiance per village and step."""

    def __init__(self, rng, n_steps, sim_start_local, out_start_s, days, villages):
        self.n = n_steps
        nh = n_steps * DT // HOUR + 3
        d0 = out_start_s / DAY
        # episodes, in seconds from the simulation start
        humid_day = max(0, int(0.3 * days))
        self.humid = (out_start_s + humid_day * DAY + 3 * HOUR,
                      out_start_s + humid_day * DAY + 23 * HOUR)
        cw0 = self.humid[1]
        self.cold_wave = (cw0, cw0 + (12 + 54 + 36) * HOUR)
        self.cold_core = (cw0 + 12 * HOUR, cw0 + 66 * HOUR)
        cw_depth = rng.uniform(5.5, 7.0)

        # hourly synoptic anomaly (AR1, tau 36 h, sd 2.3 K) and cloud latent (tau 10 h)
        syn, z, rh0 = [], [], []
        a = math.exp(-1 / 36.0)
        s = rng.gauss(0, 2.3)
        c = rng.gauss(0, 1)
        ac = math.exp(-1 / 10.0)
        r = rng.gauss(0, 1)
        for _ in range(nh):
            s = a * s + math.sqrt(1 - a * a) * rng.gauss(0, 2.3)
            c = ac * c + math.sqrt(1 - ac * ac) * rng.gauss(0, 1)
            r = ac * r + math.sqrt(1 - ac * ac) * rng.gauss(0, 1)
            syn.append(s)
            z.append(c)
            rh0.append(r)

        def interp(arr, hours):
            i = int(hours)
            f = hours - i
            return arr[i] * (1 - f) + arr[i + 1] * f

        self.cloud = [0.0] * n_steps
        self.gsouth = [0.0] * n_steps
        self.rh_base = [0.0] * n_steps
        base_t = [0.0] * n_steps
        self.wind = [0.0] * n_steps
        self.local_h = [0.0] * n_steps
        self.weekday = [0] * n_steps
        for k in range(n_steps):
            t = k * DT
            hours = t / HOUR
            loc = sim_start_local + timedelta(seconds=t)
            h = loc.hour + loc.minute / 60.0
            self.local_h[k] = h
            self.weekday[k] = loc.weekday()
            cloud = 1.0 / (1.0 + math.exp(-(interp(z, hours) * 1.6 - 1.2)))
            anom = interp(syn, hours)
            rhb = 48.0 + 9.0 * interp(rh0, hours)
            wind = 2.0
            # humid, snowy day ahead of the front
            if self.humid[0] - 3 * HOUR <= t < self.humid[1] + 2 * HOUR:
                w = min(1.0, (t - (self.humid[0] - 3 * HOUR)) / (3 * HOUR),
                        ((self.humid[1] + 2 * HOUR) - t) / (2 * HOUR))
                w = max(0.0, w)
                cloud = cloud * (1 - w) + 1.0 * w
                rhb = rhb * (1 - w) + 91.0 * w
                anom = anom * (1 - w) + 4.5 * w
            # cold wave: front (12 h ramp, windy), core 54 h (clear, dry), recovery 36 h
            cw = 0.0
            if self.cold_wave[0] <= t < self.cold_wave[1]:
                dt_cw = (t - self.cold_wave[0]) / HOUR
                if dt_cw < 12:
                    cw = -cw_depth * dt_cw / 12.0
                    wind = 7.0
                elif dt_cw < 66:
                    cw = -cw_depth
                    wind = 4.0 if dt_cw < 30 else 2.0
                else:
                    cw = -cw_depth * (1 - (dt_cw - 66) / 36.0)
                cloud *= 0.3
                rhb -= 12.0
            self.cloud[k] = cloud
            self.wind[k] = wind
            amp = 6.8 * (1.0 - 0.65 * cloud) * (0.8 if wind > 5 else 1.0)
            base_t[k] = -7.6 + anom + cw + amp * diurnal_shape(h)
            self.rh_base[k] = rhb - 14.0 * diurnal_shape(h) * (1 - cloud)
            el, cos_inc = solar(loc)
            if el > 1.0:
                am = 1.0 / math.sin(math.radians(el))
                dni = 1353.0 * 0.7 ** (am ** 0.678)
                ghi_clear = dni * math.sin(math.radians(el)) * 1.1
                beam = dni * (1 - 0.95 * cloud)
                dhi = ghi_clear * (0.1 + 0.35 * cloud * (1 - cloud) + 0.15 * cloud)
                ghi = beam * math.sin(math.radians(el)) + dhi
                albedo = 0.5 if t > self.humid[1] and t < self.humid[1] + 5 * DAY else 0.25
                self.gsouth[k] = beam * max(0.0, cos_inc) + 0.5 * dhi + 0.5 * albedo * ghi
        self.base_t = base_t

        # villages: altitude/valley offsets, night cold pooling, small local noise
        self.t_out = {}
        self.rh = {}
        for v in villages:
            off = rng.uniform(-1.5, 1.0)
            pool = rng.uniform(0.0, 2.2)
            arr = [0.0] * n_steps
            rh = [0.0] * n_steps
            e = 0.0
            ae = math.exp(-DT / 7200.0)
            rh_off = rng.uniform(-4, 4)
            for k in range(n_steps):
                e = ae * e + math.sqrt(1 - ae * ae) * rng.gauss(0, 0.35)
                h = self.local_h[k]
                night = 1.0 if (h >= 19 or h < 8) else 0.0
                arr[k] = base_t[k] + off - pool * night * (1 - self.cloud[k]) + e
                rh[k] = max(15.0, min(98.0, self.rh_base[k] + rh_off))
            self.t_out[v] = arr
            self.rh[v] = rh


# --------------------------------------------------------------------------- the fleet

class Home:
    """One household: house, heater, sensors, resident, edge box."""
    pass


def make_fleet(rng, n, villages_of, vil_type, profiles_hp, profiles_gb):
    homes = []
    # households per village (random weights), kinds by the village's conversion programme
    vids = list(villages_of.keys())
    weights = [rng.uniform(0.6, 1.4) for _ in vids]
    tot = sum(weights)
    counts = [max(3, int(round(n * w / tot))) for w in weights]
    while sum(counts) > n:
        counts[counts.index(max(counts))] -= 1
    while sum(counts) < n:
        counts[counts.index(min(counts))] += 1
    idx = 0
    for vid, cnt in zip(vids, counts):
        for _ in range(cnt):
            idx += 1
            h = Home()
            h.idx = idx
            h.village = vid
            h.township = villages_of[vid]
            hp_share = 0.95 if vil_type[vid] == "elec" else 0.08
            h.kind = "heat_pump" if rng.random() < hp_share else "gas_boiler"
            homes.append(h)
    for h in homes:
        r = random.Random(rng.getrandbits(64))
        h.rng = r
        h.device_id = "iw-%04d-%s" % (h.idx, "hp" if h.kind == "heat_pump" else "gb")
        if h.kind == "heat_pump":
            h.profile = r.choices(profiles_hp, weights=[45, 35, 20])[0]
        else:
            h.profile = r.choices(profiles_gb, weights=[40, 35, 25])[0]
        h.p = PROFILES[h.profile]
        init_house(h, r)
        if h.kind == "heat_pump":
            init_hp(h, r)
        else:
            init_boiler(h, r)
        init_resident(h, r)
        init_box(h, r)
    return homes


def init_house(h, r):
    h.area = max(55.0, min(170.0, r.lognormvariate(math.log(100), 0.25)))
    u = r.uniform(1.0, 2.2)                      # W/(m2 K), incl. ventilation
    ua = u * h.area
    fv = r.uniform(0.3, 0.45)
    h.Hao = fv * ua                              # air -> outdoor (ventilation, glazing)
    h.Ham = h.area * r.uniform(25.0, 40.0)       # air <-> mass (interior surfaces)
    h.Hmo = (1 - fv) * ua * (1 + (1 - fv) * ua / h.Ham)   # mass -> outdoor
    h.Ca = h.area * r.uniform(8e3, 15e3)         # air + furniture, J/K
    h.Cm = h.area * r.uniform(120e3, 280e3)      # walls, floors, J/K
    h.ua_eff = h.Hao + h.Hmo * h.Ham / (h.Ham + h.Hmo)
    h.Asol = r.uniform(1.2, 4.5)                 # effective south aperture g*A, m2
    h.qint = r.uniform(150.0, 450.0)             # W, people + appliances
    h.Hwin = r.uniform(250.0, 700.0)             # W/K extra while a window is open
    h.floor = (r.random() < 0.6) if h.kind == "heat_pump" else (r.random() < 0.15)
    h.em_air = 0.35 if h.floor else 0.8
    h.n_em = 1.1 if h.floor else 1.3
    h.curve_off = r.uniform(-2.0, 2.0)
    # set points
    h.sp_day = r.choice([19.0, 19.5, 20.0, 20.0, 20.5, 21.0, 21.0, 21.5, 22.0])
    h.setback = r.random() < 0.35
    h.sp_night = h.sp_day - r.choice([2.0, 3.0, 3.0, 4.0])
    h.sb_from = r.choice([21.5, 22.0, 22.5, 23.0])
    h.sb_to = r.choice([5.5, 6.0, 6.5])
    h.hyst = r.uniform(0.2, 0.5)
    h.window_daily = r.random() < 0.2
    h.window_events = []
    h.dhw_events = []
    h.away = None
    h.Ta = h.sp_day
    h.Tm = h.sp_day - 1.0
    h.win_open_until = -1


def flow_curve(h, t_out):
    if h.floor:
        t = 24.0 + 0.42 * (20.0 - t_out)
        t = min(45.0, t)
    else:
        t = 28.0 + 0.6 * (20.0 - t_out)
        t = min(55.0, t)
    return t + h.curve_off


def size_emitter(h, t_design_water):
    load = h.ua_eff * (20.0 - (-15.0))
    q = load * h.rng.uniform(1.0, 1.25)
    h.K_em = q / max(5.0, t_design_water - 20.0) ** h.n_em


def init_hp(h, r):
    p = h.p
    h.room_sensor = p["room"] is not None
    design = h.ua_eff * 35.0
    margin = r.uniform(1.25, 1.6)
    h.s_cap = r.uniform(0.012, 0.017)
    cap_ratio = (1 + h.s_cap * (-15 - 7)) * (1 - 0.006 * 10)
    need = design * margin / cap_ratio
    sizes = [6e3, 8e3, 10e3, 12e3, 14e3, 16e3, 18e3]
    h.Qnom = next((s for s in sizes if s >= need), sizes[-1])
    h.eta2 = r.uniform(0.50, 0.60)               # second-law efficiency, per unit
    h.fmin = r.uniform(20, 30)
    h.fmax = r.uniform(90, 120)
    h.fan_w = r.uniform(60, 150)
    h.pump_w = r.uniform(40, 90)
    h.mdot = h.Qnom / (CPW * 5.0)
    h.Ch = r.uniform(20e3, 30e3)
    h.Cl = (h.area * (1.2 if h.floor else 0.9) + r.choice([0, 0, 60, 100])) * CPW + 80e3
    h.g_hx = r.uniform(4, 8)                     # hx losses to outdoor air, W/K
    h.hp_limit = r.uniform(58, 62)
    h.timer_defrost = r.random() < 0.5
    h.defrost_int = r.uniform(40, 70) * 60
    h.frost_k = 3.5e-4 * r.uniform(0.7, 1.3)
    h.frost_trig = r.uniform(0.7, 0.9)
    h.lp_cut = r.uniform(1.7, 2.1)               # bar abs
    h.dis_off = r.uniform(-4, 6)
    h.flow_switch_ok = p["flow_switch"] and r.random() < 0.85
    h.fs_thr = r.uniform(0.3, 0.4)
    size_emitter(h, flow_curve(h, -15.0) - 2.5)
    # state
    h.Th = flow_curve(h, -5) + 2
    h.Tl = h.Th - 3
    h.ice = 0.0
    h.comp = False
    h.freq = 0.0
    h.run_s = 0
    h.off_until = -1
    h.cold_run = 0.0
    h.frost = 0.0
    h.defrost_left = 0
    h.Tdis = 30.0
    h.Tcoil = -5.0
    h.psuc = 5.0
    h.pdis = 5.0
    h.charge = 1.0
    h.flow_frac = 1.0
    h.fan_ok = True
    h.prot = []                                   # protection trip times (s)
    h.prot_until = -1
    h.prot_code = None
    h.lockout = None
    h.energy = r.uniform(500, 9000)
    h.runtime = r.uniform(800, 12000)
    h.P = 0.0
    h.Q = 0.0
    h.demand = True


def init_boiler(h, r):
    p = h.p
    h.room_sensor = p["room"] is not None
    design = h.ua_eff * 35.0
    h.Qmax = r.choice([18e3, 20e3, 24e3, 24e3, 26e3, 28e3])
    while h.Qmax < design * 1.3:
        h.Qmax += 4e3
    h.condensing = r.random() < 0.4
    h.mod_min = 0.2 if h.condensing else r.uniform(0.28, 0.38)
    h.mdot = r.uniform(0.22, 0.35)
    h.Ch = r.uniform(8e3, 12e3)
    h.Cl = (h.area * (1.2 if h.floor else 0.8)) * CPW + 60e3
    h.g_hx = r.uniform(3, 5)
    dial = r.choice([55, 60, 65, 70, 70, 75]) if not h.floor else r.choice([40, 45])
    h.dial = float(dial)
    h.weather_comp = p["outdoor"] is not None and r.random() < 0.5
    size_emitter(h, (55.0 if not h.floor else 38.0))
    h.anti_cycle = r.uniform(3, 8) * 60
    h.p_fill = r.uniform(1.0, 1.6)
    h.kP = r.uniform(0.008, 0.03)                # bar per K of mean water temperature
    h.leak = r.uniform(0.0, 0.02) / DAY          # healthy drift, bar/s
    h.gas_own = 1.0                              # own regulator factor
    h.p_ign = r.uniform(0.93, 0.99)
    h.combi = True
    h.dhw_events = []
    # state
    h.Th = 55.0 if not h.floor else 38.0
    h.Tl = h.Th - 8
    h.ice = 0.0
    h.burner = False
    h.mod = 0.0
    h.off_until = -1
    h.ign_count = float(r.randint(2000, 30000))
    h.lockout = None
    h.fails_in_demand = 0
    h.flue = 25.0
    h.post_purge = False
    h.cond_blocked = False
    h.flow_frac = 1.0
    h.Tdhw = 15.0
    h.dhw_until = -1
    h.P = 6.0
    h.Q = 0.0
    h.runtime = r.uniform(800, 12000)
    h.gas_now = 20.0
    h.prot_code = None
    h.demand = True


def init_resident(h, r):
    h.vulnerable = r.random() < 0.25
    if r.random() < 0.2:
        h.comfort = r.uniform(13.5, 15.5)        # stoic, often elderly
    else:
        h.comfort = r.uniform(16.0, 18.0)
    h.day_out = (not h.vulnerable) and r.random() < 0.3
    h.sleep_h = r.uniform(21.0, 23.0)
    h.wake_h = r.uniform(5.5, 7.0)
    h.night_caller = r.random() < 0.4 or h.vulnerable and r.random() < 0.5
    h.noticed = None
    h.call_at = None


def init_box(h, r):
    h.phase = r.uniform(0, 1)                    # fraction of the reporting interval
    h.seq = 0
    h.silences = []                              # (start_s, end_s, kind, lost)
    h.bias = {k: r.gauss(0, 0.25) for k in ("room", "out", "flow", "ret", "dis", "coil",
                                              "flue", "dhw")}
    h.bias["room"] = r.gauss(0, 0.4)
    h.bias["p"] = r.gauss(0, 0.03)
    h.bias["gas"] = r.gauss(0, 0.4)
    h.frozen_values = None
    h.last_values = None
    h.last_fault = None
    h.installed_at = -INF
    h.fault = None
    h.commission = None


# --------------------------------------------------------------------------- schedules

def room_setpoint(h, t, lh):
    if h.away and h.away[0] <= t < h.away[1]:
        return h.away[2]
    if h.setback and (lh >= h.sb_from or lh < h.sb_to):
        return h.sp_night
    return h.sp_day


def resident_state(h, lh, t):
    """'asleep', 'out', 'home'."""
    if h.away and h.away[0] <= t < h.away[1]:
        return "away"
    if lh >= h.sleep_h or lh < h.wake_h:
        return "asleep"
    if h.day_out and 8.0 <= lh < 17.5:
        return "out"
    return "home"


# --------------------------------------------------------------------------- heat pump step

def step_hp(h, k, t, to, rh, gs, lh, ctx):
    r = h.rng
    f = h.fault
    fk = f["kind"] if f and f["start"] <= t < f["end_s"] else None
    if f and f["start"] <= t:
        apply_progressive(h, f, t)
    power_on = ctx["power"]
    dead = fk in ("hp_controller_dead", "hp_hung_controller") or fk == "hp_breaker_trip" \
        or not power_on

    sp = room_setpoint(h, t, lh)
    h.sp_now = sp
    target = flow_curve(h, to)
    if h.room_sensor:
        target += 2.0
    elif h.setback and (lh >= h.sb_from or lh < h.sb_to):
        target -= 5.0                               # night mode on the unit's own timer
    commissioning = h.commission and h.commission[0] <= t < h.commission[1]
    if commissioning:
        cph = (t - h.commission[0]) / HOUR
        if cph < 2.5:
            h.sp_now = sp = 25.0                    # installer's test set point
        if h.lockout and r.random() < 0.15:
            h.lockout = None                        # installer resets the unit
            h.prot = []
    elif h.commission and t < h.commission[1] + DT and h.lockout:
        h.lockout = None
        h.prot = []
    h.target = target
    # room thermostat (the controller's room sensor reading)
    meas = h.Ta + h.bias["room"]
    if h.room_sensor:
        if h.demand and meas > sp + h.hyst:
            h.demand = False
        elif not h.demand and meas < sp - h.hyst:
            h.demand = True
    else:
        # no room sensor: the unit runs on water temperature; "off" while the family is away
        h.demand = not (h.away and h.away[0] <= t < h.away[1])
    if not h.demand and h.Tl < 7.0:
        h.antifreeze = True
    if getattr(h, "antifreeze", False):
        if h.Tl > 15.0:
            h.antifreeze = False
        else:
            h.demand = True
    if commissioning:
        h.demand = cph > 0.7 and (cph < 1.3 or cph > 2.5)

    # pump: runs with demand and always in frost (anti-freeze circulation)
    pump = (h.demand or to < 3.0) and not dead
    flow = h.flow_frac if pump else 0.0
    if commissioning and (t - h.commission[0]) < 1.2 * HOUR:
        flow = pump and r.uniform(0.1, 0.8) or 0.0   # air in the circuit, being purged
    mdot = h.mdot * flow

    # protections
    code = None
    if h.lockout:
        code = h.lockout
    elif t < h.prot_until:
        code = h.prot_code

    if dead or code:
        if h.comp:
            h.comp = False
            h.off_until = t + 180
        h.freq = 0.0
        h.defrost_left = 0
    else:
        if h.comp:
            h.run_s += DT
            if h.defrost_left > 0:
                pass
            else:
                err = target - h.Th
                h.freq = max(h.fmin, min(h.fmax, h.freq + 4.0 * err))
                if h.run_s < 180:
                    h.freq = min(h.freq, 40.0)
                stop = False
                if h.Th > h.hp_limit:
                    stop = True                     # water high limit, no code
                elif h.Th > target + 3.0 and h.freq <= h.fmin + 0.5 and h.run_s >= 360:
                    stop = True
                elif not h.demand and h.run_s >= 360:
                    stop = True
                if stop:
                    h.comp = False
                    h.freq = 0.0
                    h.off_until = t + 180 + (420 if h.Th > h.hp_limit else 0)
        else:
            if h.demand and t >= h.off_until and \
                    (h.Tl < target - 4.0 or h.room_sensor and h.Th < target - 1.0):
                h.comp = True
                h.run_s = 0
                h.freq = 35.0
        # flow switch (on units that have a working one)
        if h.comp and h.flow_switch_ok and flow < h.fs_thr:
            trip(h, t, "water_flow")
    # refrigerant side
    airflow = 1.0 if h.fan_ok else 0.08
    fr = h.freq / h.fmax if h.comp else 0.0
    undercharge = max(0.0, 0.92 - h.charge)
    te = to - (5.0 + 5.0 * fr) - (12.0 if not h.fan_ok else 0.0) - 35.0 * max(0.0, 1 - h.charge)
    tc = h.Th + 1.5 + 2.5 * fr
    q = 0.0
    p_comp = 0.0
    if h.comp and h.defrost_left > 0:
        h.defrost_left -= DT
        q = -0.2 * h.Qnom
        h.freq = 0.7 * h.fmax
        p_comp = 0.2 * h.Qnom / 1.8
        h.Tcoil = relax(h.Tcoil, 15.0, 150.0)
        h.psuc = relax(h.psuc, psat_r410a(0.0), 60.0)
        h.pdis = relax(h.pdis, psat_r410a(h.Th + 5), 60.0)
        if h.defrost_left <= 0:
            h.frost = 0.4 if not h.fan_ok else 0.0
            h.cold_run = 0.0
    elif h.comp:
        qmax = h.Qnom * max(0.3, (1 + h.s_cap * (to - 7.0))) * (1 - 0.006 * (h.Th - 35.0))
        cap = (1 - 0.2 * h.frost) * max(0.2, 1 - 2.0 * undercharge) * (1.0 if h.fan_ok else 0.4)
        q = qmax * fr * cap
        pl = 1.0 - 0.12 * ((fr - 0.55) / 0.45) ** 2
        cop = h.eta2 * pl * (tc + 273.15) / max(8.0, tc - te)
        cop *= (1 - 0.15 * h.frost) * (1 - 1.2 * undercharge)
        cop = max(1.05, min(7.0, cop))
        p_comp = q / cop
        h.Tcoil = relax(h.Tcoil, te + 1.0 + 2.0 * h.frost, 120.0)
        h.psuc = relax(h.psuc, psat_r410a(te), 60.0)
        h.pdis = relax(h.pdis, psat_r410a(tc), 60.0)
        # frost growth
        if h.Tcoil < 0.0:
            rate = h.frost_k * max(0.0, rh / 100.0 * rho_v_water(to) - rho_v_ice(h.Tcoil))
            rate *= math.sqrt(max(fr, 0.2)) * (1.6 if not h.fan_ok else 1.0)
            h.frost = min(1.0, h.frost + rate * DT)
            if h.Tcoil < -3.0:
                h.cold_run += DT
        start_defrost = False
        if h.frost >= h.frost_trig and h.run_s > 300:
            start_defrost = True
        elif not h.timer_defrost and h.cold_run >= 3 * HOUR and h.frost > 0.3:
            start_defrost = True                    # longest interval of a demand defrost
        elif h.timer_defrost and h.cold_run >= h.defrost_int and h.Tcoil < -3.0:
            start_defrost = True
        if start_defrost:
            h.defrost_left = int(120 + 480 * h.frost) // DT * DT or DT
        # low pressure protection, discharge overheat
        if h.psuc < h.lp_cut:
            trip(h, t, "low_pressure")
    else:
        h.Tcoil = relax(h.Tcoil, to, 300.0)
        peq = psat_r410a(to + 2.0)
        h.psuc = relax(h.psuc, peq, 200.0)
        h.pdis = relax(h.pdis, peq, 200.0)
    # discharge temperature
    if h.comp:
        sh = 5.0 + min(40.0, 100.0 * undercharge) + (8.0 if not h.fan_ok else 0.0)
        tdis_eq = tc + 20.0 + 0.25 * (tc - te) + (sh - 5.0) + h.dis_off
        if h.defrost_left > 0:
            tdis_eq -= 15.0
        h.Tdis = relax(h.Tdis, tdis_eq, 240.0)
        if h.Tdis > 115.0:
            trip(h, t, "discharge_overheat")
    else:
        h.Tdis = relax(h.Tdis, to + 8.0, 900.0)
    if not h.comp:
        h.frost = max(0.0, h.frost - (0.0005 * DT if to > 0 else 0.0))
    # electric power
    p = 8.0 if fk == "hp_controller_dead" and power_on else 0.0
    if not dead:
        p = 15.0
        if pump:
            p += h.pump_w
        if h.comp:
            p += p_comp
            if h.defrost_left <= 0:
                p += h.fan_w * (0.4 + 0.6 * fr) * (0.1 if not h.fan_ok else 1.0)
        elif to < 5.0:
            p += 40.0                               # crankcase heater
    h.P = p
    h.energy += p * DT / 3.6e6
    if h.comp:
        h.runtime += DT / 3600.0
    h.pcomp = p_comp
    h.Q = q
    hydraulics(h, q, mdot, to, to)
    return mdot


def trip(h, t, category):
    """A protection trip: the code shows while the unit waits, 3 in an hour lock it out."""
    if t < h.prot_until or h.lockout:
        return
    h.prot = [x for x in h.prot if t - x < HOUR] + [t]
    h.comp = False
    h.freq = 0.0
    h.defrost_left = 0
    h.off_until = t + 300
    h.prot_until = t + 300
    h.prot_code = category
    if len(h.prot) >= 3:
        h.lockout = category


# --------------------------------------------------------------------------- boiler step

def step_boiler(h, k, t, to, gs, lh, ctx):
    r = h.rng
    f = h.fault
    fk = f["kind"] if f and f["start"] <= t < f["end_s"] else None
    if f and f["start"] <= t:
        apply_progressive(h, f, t)
    power_on = ctx["power"]
    dead = fk in ("gb_thermostat_dead", "gb_hung_controller") or not power_on
    gas = ctx["gas"] * h.gas_own
    h.gas_now = gas
    sp = room_setpoint(h, t, lh)
    h.sp_now = sp
    meas = h.Ta + h.bias["room"]
    if h.demand and meas > sp + h.hyst:
        h.demand = False
    elif not h.demand and meas < sp - h.hyst:
        h.demand = True
    tset = h.dial
    if h.weather_comp:
        tset = min(h.dial, 30.0 + 1.1 * (20.0 - to))
    h.target = tset
    # water pressure
    h.p_fill -= h.leak * DT
    wp = h.p_fill + h.kP * (h.Tl - 15.0)
    h.wp = wp
    code = h.lockout
    if wp < 0.6 and not code:
        h.lockout = code = "low_water_pressure"
    if h.p.get("gas") is not None and gas < 10.0 and not code:
        h.prot_code = "gas_supply"
    elif h.prot_code == "gas_supply" and gas > 12.0:
        h.prot_code = None
    if not code and h.prot_code:
        code = h.prot_code
    # DHW draws (combi boiler): priority over heating
    dhw = h.dhw_until > t and not dead and not code
    ch_demand = h.demand and not dead and not code
    q = 0.0
    h.post_purge = False
    h.ign_now = False
    if dead or code or h.cond_blocked:
        if h.burner:
            h.post_purge = True
        h.burner = False
        h.mod = 0.0
        if h.cond_blocked and (ch_demand or dhw) and (k % 5 == 0):
            h.ign_now = True                         # fan pre-purge, pressure switch refuses
    else:
        want = dhw or ch_demand
        if h.burner:
            if not want:
                h.burner = False
                h.post_purge = True
                h.off_until = t + (0 if dhw else h.anti_cycle)
            elif not dhw and h.Th > tset + 5.0:
                h.burner = False
                h.post_purge = True
                h.off_until = t + h.anti_cycle
            elif h.Th > 95.0:
                h.burner = False                     # overheat limiter (auto reset), no code
                h.post_purge = True
                h.off_until = t + 600
            elif gas < 9.0 and r.random() < (9.0 - gas) / 9.0 * 0.5:
                h.burner = False                     # flame loss, re-ignite next step
                h.fails_in_demand += 1
                if h.fails_in_demand >= 3:
                    h.lockout = "ignition_failure"
        elif want and t >= h.off_until and (dhw or h.Th < tset - 5.0):
            h.ign_now = True
            ok = False
            p_ok = h.p_ign * max(0.0, min(1.0, (gas - 5.0) / 6.0))
            for _ in range(3):
                h.ign_count += 1
                if r.random() < p_ok:
                    ok = True
                    break
            if ok:
                h.burner = True
                h.mod = h.mod_min                    # soft start at ignition load
            else:
                h.lockout = "ignition_failure"
        if h.burner:
            if dhw:
                h.mod = min(1.0, h.mod + 0.3)
            elif not h.ign_now:
                # flow-temperature PI with a ramp limit (soft modulation), not on the ignition step
                h.mod = max(h.mod_min, min(1.0, h.mod + max(-0.15, min(0.1, 0.02 * (tset - h.Th)))))
            q = h.Qmax * h.mod * math.sqrt(min(1.0, max(0.0, gas) / 20.0))
    if not h.burner:
        h.mod = 0.0
    if h.burner:
        h.runtime += DT / 3600.0
    else:
        h.fails_in_demand = 0 if not ch_demand else h.fails_in_demand
    pump = (ch_demand or h.burner) and not dhw and not dead
    flow = h.flow_frac if pump else 0.0
    mdot = h.mdot * flow
    # flue temperature
    if h.burner:
        if h.condensing:
            feq = h.Tl + 6.0 + 12.0 * h.mod
        else:
            feq = h.Th + 45.0 + 55.0 * h.mod
        h.flue = relax(h.flue, feq, 150.0)
    else:
        h.flue = relax(h.flue, h.Ta + 3.0, 400.0)
    # DHW: heat goes to the tap, the primary sensor sees the plate exchanger's water
    if dhw and h.burner:
        h.Th = relax(h.Th, 62.0, 60.0)
        h.Tdhw = relax(h.Tdhw, 47.0, 60.0)
        q_ch = 0.0
    else:
        h.Tdhw = relax(h.Tdhw, 14.0, 900.0)
        q_ch = q
    h.Q = q_ch
    h.P = 0.0 if dead and not power_on else (6.0 + (55.0 if pump else 0.0)
                                             + ((15.0 + 45.0 * h.mod) if h.burner else 0.0)
                                             + (40.0 if h.post_purge or h.ign_now else 0.0))
    hydraulics(h, q_ch, mdot, h.Ta, to, boiler=True)
    return mdot


# --------------------------------------------------------------------------- hydraulics, house

def hydraulics(h, q_src, mdot, t_amb_hx, to, boiler=False):
    g = mdot * CPW
    # source heat exchanger (flow sensor)
    th_eq = (q_src + g * h.Tl + h.g_hx * t_amb_hx) / (g + h.g_hx)
    th_new = relax(h.Th, th_eq, h.Ch / (g + h.g_hx))
    # the high-limit thermostat opens within seconds: the heat source stops inside the step,
    # so the water overshoots the limit by a few kelvin only
    if q_src > 0:
        lim = 97.0 if boiler else h.hp_limit + 1.0
        if th_new > lim:
            th_new = max(h.Th, lim + h.rng.uniform(0.0, 2.5))
    # water in the unit freezes at 0 C: latent heat (about 5 kg x 334 kJ/kg) holds it there
    if th_new < 0.0 and (h.Th >= 0.0 or h.ice < 1.0):
        e = -th_new * h.Ch                          # J below zero this step
        h.ice = min(1.0, h.ice + e / 1.67e6)
        th_new = 0.0 if h.ice < 1.0 else th_new
    elif th_new > 0.0 and h.ice > 0.0:
        e = th_new * h.Ch
        h.ice = max(0.0, h.ice - e / 1.67e6)
        th_new = 0.0 if h.ice > 0.0 else th_new
    h.Th = th_new
    # emitter loop (return sensor)
    dtw = h.Tl - h.Ta
    if dtw > 0.1:
        qem = h.K_em * dtw ** h.n_em
        kp = qem / dtw
    else:
        qem = 0.0
        kp = h.K_em * 0.1 ** (h.n_em - 1)
    tl_eq = (g * h.Th + kp * h.Ta) / (g + kp)
    h.Tl = relax(h.Tl, tl_eq, h.Cl / (g + kp))
    h.qem = max(0.0, h.K_em * max(0.0, h.Tl - h.Ta) ** h.n_em)


def step_house(h, t, to, gs, wind, lh):
    hao = h.Hao * (1 + 0.03 * (wind - 2.0))
    if t < h.win_open_until:
        hao += h.Hwin
    qsol = h.Asol * gs
    # internal gains: cooking peaks, evening use
    qi = h.qint
    if 11.0 <= lh < 12.5 or 17.5 <= lh < 19.5:
        qi += 500.0
    if h.away and h.away[0] <= t < h.away[1]:
        qi = 60.0
    qa = h.em_air * h.qem + 0.5 * qsol + qi
    qm = (1 - h.em_air) * h.qem + 0.5 * qsol
    ta_eq = (h.Ham * h.Tm + hao * to + qa) / (h.Ham + hao)
    h.Ta = relax(h.Ta, ta_eq, h.Ca / (h.Ham + hao))
    tm_eq = (h.Ham * h.Ta + h.Hmo * to + qm) / (h.Ham + h.Hmo)
    h.Tm = relax(h.Tm, tm_eq, h.Cm / (h.Ham + h.Hmo))


# --------------------------------------------------------------------------- faults

def apply_progressive(h, f, t):
    """Set the physical state a fault imposes at time t (called every step once started)."""
    kind = f["kind"]
    active = t < f["end_s"]
    el = t - f["start"]
    if kind in ("hp_pump_seized", "gb_pump_seized"):
        h.flow_frac = 0.0 if active else 1.0
    elif kind in ("hp_valve_closed", "gb_valve_closed"):
        h.flow_frac = f["frac"] if active else 1.0
    elif kind == "hp_fan_failure":
        h.fan_ok = not active
    elif kind in ("hp_refrigerant_slow_leak", "hp_fast_leak_lp_lockout"):
        if active:
            h.charge = max(f["c_end"], 1.0 - (1.0 - f["c_end"]) * el / f["ramp"])
        else:
            h.charge = 1.0
    elif kind == "hp_filter_clog_flow_lockout":
        if active:
            h.flow_frac = max(f["frac_end"], 0.9 - (0.9 - f["frac_end"]) * el / f["ramp"])
        else:
            h.flow_frac = 1.0
    elif kind == "gb_slow_water_leak":
        if active:
            h.leak = f["rate"]
        elif not f.get("fixed"):
            f["fixed"] = True
            h.leak = 0.0
            h.p_fill = h.rng.uniform(1.2, 1.5)
    elif kind == "gb_frozen_condensate":
        h.cond_blocked = active
    elif kind == "gb_regulator_frozen":
        if active:
            h.gas_own = max(0.12, 1.0 - el / f["ramp"] * 0.88)
        else:
            h.gas_own = 1.0
    elif kind == "gb_electrode_wear":
        if active:
            h.p_ign = max(f["p_end"], 0.95 - (0.95 - f["p_end"]) * el / f["ramp"])
        else:
            h.p_ign = 0.97
    if not active and not f.get("cleared"):
        f["cleared"] = True
        h.lockout = None
        h.prot = []
        h.prot_code = None if h.kind == "heat_pump" or h.prot_code != "gas_supply" else h.prot_code
        h.fails_in_demand = 0


COMFORT_FAULTS = {
    "hp_pump_seized", "hp_controller_dead", "hp_breaker_trip", "hp_fan_failure",
    "hp_refrigerant_slow_leak", "hp_valve_closed", "hp_hung_controller",
    "hp_filter_clog_flow_lockout", "hp_fast_leak_lp_lockout",
    "gb_pump_seized", "gb_thermostat_dead", "gb_frozen_condensate", "gb_slow_water_leak",
    "gb_hung_controller", "gb_valve_closed", "gb_regulator_frozen", "gb_electrode_wear",
}


def plan(args, rng, homes, weather, out_start, out_end, villages_of, vil_type):
    days = args.days
    scale = args.households * days / 3000.0
    faults = []
    traps = []
    used = set()
    span = out_end - out_start
    cw = weather.cold_wave
    core = weather.cold_core

    def pick(kind_req, cond=lambda h: True):
        cands = [h for h in homes if h.device_id not in used and
                 (kind_req == "any" or h.kind == kind_req) and cond(h)]
        if not cands:
            return None
        h = rng.choice(cands)
        used.add(h.device_id)
        return h

    def at_hour(day_s, hours):
        return day_s + hours * HOUR

    def cold_night_time():
        s = core[0] + rng.uniform(0, core[1] - core[0])
        # move to a night hour
        base = s - (s - out_start) % DAY
        hr = rng.choice([rng.uniform(0, 6.5), rng.uniform(18, 24)])
        v = base + hr * HOUR
        return max(cw[0], min(v, cw[1] - 6 * HOUR))

    def any_time(lo=0.08, hi=0.85):
        return out_start + rng.uniform(lo, hi) * span

    # commissioning (trap) and away residents (trap) first, so faults avoid them
    n_comm = max(1, int(round(scale * 2)))
    for _ in range(n_comm):
        h = pick("heat_pump")
        if not h:
            break
        tc = out_start + int(rng.uniform(0.3, 0.7) * days) * DAY + rng.uniform(9.5, 11) * HOUR
        h.commission = (tc, tc + rng.uniform(4.0, 6.0) * HOUR)
        h.installed_at = tc
        h.Ta = h.Tm = rng.uniform(6.0, 10.0)
        h.commission_init = True
        traps.append(dict(id="T-comm-%s" % h.device_id, kind="commissioning", scope="device",
                          device=h.device_id, village=h.village, start_ms=None, end_ms=None,
                          _s=tc, _e=h.commission[1], note="new unit; house starts at %.1f C" % h.Ta))
    n_away = max(1, int(round(len(homes) * 0.04)))
    for _ in range(n_away):
        h = pick("any")
        if not h:
            break
        a0 = out_start + rng.uniform(0.05, 0.6) * span
        a1 = min(out_end + DAY, a0 + rng.uniform(2.0, 5.0) * DAY)
        h.away = (a0, a1, rng.choice([5.0, 6.0, 7.0]))
        traps.append(dict(id="T-away-%s" % h.device_id, kind="resident_away", scope="device",
                          device=h.device_id, village=h.village, _s=a0, _e=a1,
                          note="heating set to %.0f C" % h.away[2]))

    # village faults
    elec_v = [v for v in villages_of if vil_type[v] == "elec"]
    gas_v = [v for v in villages_of if vil_type[v] == "gas"]
    vfaults = []
    pv = rng.choice(elec_v + gas_v)
    day0 = core[0] - (core[0] - out_start) % DAY
    p0 = day0 + rng.uniform(17.5, 19.5) * HOUR
    if p0 < core[0]:
        p0 += DAY
    p1 = p0 + rng.uniform(2.5, 5.0) * HOUR
    vfaults.append(dict(id="F-power-%s" % pv, scope="village", kind="village_power_outage",
                        village=pv, township=villages_of[pv], device=None, start=p0, end_s=p1,
                        coded=False))
    gv = rng.choice([v for v in gas_v if v != pv] or gas_v)
    g0 = day0 + rng.uniform(5.5, 7.0) * HOUR
    while g0 < core[0]:
        g0 += DAY
    g1 = g0 + rng.uniform(4.0, 8.0) * HOUR
    vfaults.append(dict(id="F-gas-%s" % gv, scope="village", kind="village_gas_pressure_drop",
                        village=gv, township=villages_of[gv], device=None, start=g0, end_s=g1,
                        coded=False, p_low=rng.uniform(7.0, 10.5)))

    for kind, dkind, base in DEVICE_FAULTS:
        n = int(round(base * scale))
        if n == 0 and rng.random() < base * scale + 0.5:
            n = 1
        for _ in range(n):
            cond = lambda h: True
            if kind == "gb_frozen_condensate":
                cond = lambda h: h.condensing
            if kind in ("hp_pump_seized", "hp_valve_closed"):
                cond = lambda h: not h.flow_switch_ok
            if kind == "hp_filter_clog_flow_lockout":
                cond = lambda h: h.flow_switch_ok
            h = pick(dkind, cond)
            if h is None:
                continue
            f = dict(id="F-%s-%s" % (kind, h.device_id), scope="device", kind=kind,
                     device=h.device_id, village=h.village, township=h.township,
                     end_s=INF, coded=kind in DESIGNED_CODED)
            if kind in ("hp_breaker_trip", "gb_frozen_condensate", "gb_regulator_frozen"):
                f["start"] = cold_night_time()
            elif kind == "comms_outage_frost":
                f["start"] = cold_night_time()
                f["end_s"] = f["start"] + rng.uniform(2.0, 14.0) * HOUR
            elif kind in ("hp_valve_closed", "gb_valve_closed"):
                d = int(rng.uniform(0.05, 0.8) * days)
                f["start"] = out_start + d * DAY + rng.uniform(9.0, 16.0) * HOUR
                f["frac"] = rng.uniform(0.08, 0.15)
            elif kind == "hp_refrigerant_slow_leak":
                f["start"] = any_time(0.02, 0.4)
                f["c_end"] = rng.uniform(0.6, 0.75)
                f["ramp"] = rng.uniform(3.0, 7.0) * DAY * days / 10.0
            elif kind == "hp_fast_leak_lp_lockout":
                f["start"] = any_time(0.1, 0.8)
                f["c_end"] = rng.uniform(0.35, 0.5)
                f["ramp"] = rng.uniform(4.0, 20.0) * HOUR
            elif kind == "hp_filter_clog_flow_lockout":
                f["start"] = any_time(0.05, 0.6)
                f["frac_end"] = rng.uniform(0.2, 0.3)
                f["ramp"] = rng.uniform(1.0, 3.0) * DAY * min(1.0, days / 10.0)
            elif kind == "gb_slow_water_leak":
                f["start"] = any_time(0.02, 0.35)
                f["rate"] = rng.uniform(0.15, 0.35) / DAY * max(1.0, 10.0 / days)
            elif kind == "gb_electrode_wear":
                f["start"] = any_time(0.02, 0.4)
                f["p_end"] = rng.uniform(0.1, 0.25)
                f["ramp"] = rng.uniform(2.0, 4.0) * DAY * min(1.0, days / 10.0)
            else:
                f["start"] = any_time()
            if kind == "gb_regulator_frozen":
                f["ramp"] = rng.uniform(0.5, 2.0) * HOUR
            if kind == "hp_breaker_trip":
                f["self_reset"] = rng.random() < 0.4
            h.fault = f
            faults.append(f)

    # traps: window airing, Wi-Fi drops, set-back
    for h in homes:
        r = h.rng
        if h.window_daily:
            d = 0
            while out_start + d * DAY < out_end:
                if r.random() < 0.85:
                    s = out_start + d * DAY + r.uniform(7.5, 10.0) * HOUR
                    dur = r.uniform(8, 30) * 60
                    h.window_events.append((s, s + dur))
                if r.random() < 0.3:
                    s = out_start + d * DAY + r.uniform(13.0, 16.0) * HOUR
                    h.window_events.append((s, s + r.uniform(5, 15) * 60))
                d += 1
            for s, e in h.window_events:
                traps.append(dict(id="T-win-%s-%d" % (h.device_id, int(s)), kind="window_airing",
                                  scope="device", device=h.device_id, village=h.village,
                                  _s=s, _e=e))
        if r.random() < 0.25 and not h.commission:
            for _ in range(r.randint(1, 4)):
                s = out_start + r.uniform(0.0, 1.0) * span
                e = s + r.uniform(5, 25) * 60
                h.silences.append((s, e, "wifi", True))
                traps.append(dict(id="T-wifi-%s-%d" % (h.device_id, int(s)), kind="wifi_drop",
                                  scope="device", device=h.device_id, village=h.village,
                                  _s=s, _e=e))
        if h.setback:
            d = -1
            while out_start + d * DAY < out_end:
                s = out_start + d * DAY + h.sb_from * HOUR
                e = out_start + (d + 1) * DAY + h.sb_to * HOUR
                if e > out_start:
                    traps.append(dict(id="T-sb-%s-%d" % (h.device_id, d), kind="night_setback",
                                      scope="device", device=h.device_id, village=h.village,
                                      _s=max(s, out_start), _e=min(e, out_end),
                                      note="%.1f -> %.1f C" % (h.sp_day, h.sp_night)))
                d += 1
        if h.kind == "gas_boiler":
            d = -SPIN_DAYS
            while out_start + d * DAY < out_end:
                for lo, hi in ((6.5, 8.5), (11.5, 13.0), (18.5, 21.5)):
                    if r.random() < 0.7:
                        s = out_start + d * DAY + r.uniform(lo, hi) * HOUR
                        h.dhw_events.append((s, s + r.uniform(3, 12) * 60))
                d += 1
    traps.append(dict(id="T-humid-day", kind="humid_day_heavy_defrost", scope="district",
                      device=None, village=None, _s=weather.humid[0], _e=weather.humid[1]))
    # comms outages are silences too
    for f in faults:
        if f["kind"] == "comms_outage_frost":
            h = next(x for x in homes if x.device_id == f["device"])
            h.silences.append((f["start"], f["end_s"], "comms", True))
    return faults, vfaults, traps


# --------------------------------------------------------------------------- residents

def resident_step(h, t, lh, faults_active, complaints, ctx_complaint):
    """Noticing and calling. faults_active: the fault records affecting this home now."""
    if not faults_active:
        h.noticed = None
        h.call_at = None
        return
    r = h.rng
    state = resident_state(h, lh, t)
    if h.noticed is None:
        if t < h.win_open_until + 1800:
            return                                  # they opened the window themselves
        if h.Ta < h.comfort and state != "away":
            if state == "home" and r.random() < (1.0 / 15.0 if h.vulnerable else 1.0 / 20.0):
                h.noticed = t
            elif state == "asleep" and h.Ta < h.comfort - 3.0 and r.random() < 0.02:
                h.noticed = t
            elif state == "asleep" and h.Ta < h.comfort - 1.0 and h.vulnerable and \
                    r.random() < 0.01:
                h.noticed = t
        if h.noticed is not None:
            for f in faults_active:
                f.setdefault("noticed_s", {}).setdefault(h.device_id, t)
            # a resident who finds the heater's breaker tripped may reset it
            for f in faults_active:
                if f["kind"] == "hp_breaker_trip" and f.get("self_reset"):
                    f["end_s"] = t + r.uniform(5, 45) * 60
                    f["ended_by"] = "resident reset the breaker"
                    h.noticed = INF
                    return
            if r.random() < 1.0 / 3.0:
                delay = r.uniform(10, 40) * 60
            else:
                delay = r.uniform(60, 240) * 60
            call = t + delay
            clh = (lh + delay / HOUR) % 24.0
            if (clh >= 22.5 or clh < 6.0) and not h.night_caller:
                # waits for the morning
                to_wake = ((h.wake_h + r.uniform(0.3, 1.5)) - clh) % 24.0
                call += to_wake * HOUR
            h.call_at = call
    elif h.call_at is not None and t >= h.call_at:
        h.call_at = None
        for f in faults_active:
            complaints.append((f, h.device_id, t))
        ctx_complaint(h, faults_active, t)


# --------------------------------------------------------------------------- readings

def reading_values(h, t, to_true, lh):
    p = h.p
    r = h.rng
    b = h.bias
    v = {}
    g = r.gauss
    if h.kind == "heat_pump":
        if p["room"] is not None:
            v["indoor_temp_c"] = quant(h.Ta + b["room"] + g(0, 0.05), p["room"])
        v["outdoor_temp_c"] = quant(to_true + b["out"] + g(0, 0.1), p["outdoor"])
        v["flow_temp_c"] = quant(h.Th + b["flow"] + g(0, 0.08), p["water"])
        v["return_temp_c"] = quant(h.Tl + b["ret"] + g(0, 0.08), p["water"])
        if p["setpoint"] == "room":
            v["setpoint_c"] = h.sp_now
        else:
            v["setpoint_c"] = quant(h.target, 0.5)
        v["running"] = 1 if h.comp else 0
        v["defrost_active"] = 1 if (h.comp and h.defrost_left > 0) else 0
        if p["freq"]:
            v["compressor_freq_hz"] = int(round(h.freq))
        if p["current"]:
            v["compressor_current_a"] = round(h.pcomp / (220 * 0.95) + (0.1 if h.comp else 0), 1)
        if p["discharge"] is not None:
            v["discharge_temp_c"] = quant(h.Tdis + b["dis"] + g(0, 0.2), p["discharge"])
        if p["suction"] is not None:
            v["suction_pressure_bar"] = quant(h.psuc + g(0, 0.03), p["suction"])
        if p["dis_p"] is not None:
            v["discharge_pressure_bar"] = quant(h.pdis + g(0, 0.05), p["dis_p"])
        if p["coil"] is not None:
            v["coil_temp_c"] = quant(h.Tcoil + b["coil"] + g(0, 0.1), p["coil"])
        v["electric_power_w"] = int(round(max(0.0, h.P * (1 + g(0, 0.01)))))
        v["energy_kwh"] = round(h.energy, 2)
        if p["heat_out"]:
            ho = h.mdot_now * (1 + g(0, 0.03)) * CPW * (h.Th - h.Tl)
            v["heat_output_w"] = int(round(max(0.0, ho)))
        v["runtime_h"] = quant(h.runtime, p["runtime"]) if p["runtime"] < 1 else int(h.runtime)
    else:
        if p["room"] is not None:
            v["indoor_temp_c"] = quant(h.Ta + b["room"] + g(0, 0.05), p["room"])
        if p["outdoor"] is not None:
            v["outdoor_temp_c"] = quant(to_true + b["out"] + g(0, 0.1), p["outdoor"])
        v["flow_temp_c"] = quant(h.Th + b["flow"] + g(0, 0.08), p["water"])
        v["return_temp_c"] = quant(h.Tl + b["ret"] + g(0, 0.08), p["water"])
        v["setpoint_c"] = h.sp_now if p["setpoint"] == "room" else quant(h.target, 1.0)
        v["running"] = 1 if h.burner else 0
        v["flame_on"] = 1 if h.burner else 0
        v["modulation_pct"] = int(round(100 * h.mod)) if h.burner else 0
        if p["fan"]:
            if h.burner:
                rpm = 1300 + 3900 * h.mod + g(0, 30)
            elif h.post_purge or h.ign_now:
                rpm = 3000 + g(0, 100)
            else:
                rpm = 0
            v["fan_speed_rpm"] = int(round(max(0, rpm)))
        v["ignition_attempts"] = int(h.ign_count)
        v["flue_temp_c"] = quant(h.flue + b["flue"] + g(0, 0.3), p["flue"])
        if p["pressure"] is not None:
            v["water_pressure_bar"] = quant(max(0.0, h.wp + b["p"] + g(0, 0.015)), p["pressure"])
        if p["gas"] is not None:
            v["gas_pressure_mbar"] = quant(max(0.0, h.gas_now + b["gas"] + g(0, 0.2)), p["gas"])
        if p["electric"]:
            v["electric_power_w"] = int(round(h.P))
        if p["dhw"] is not None:
            v["dhw_temp_c"] = quant(h.Tdhw + b["dhw"] + g(0, 0.1), p["dhw"])
        v["runtime_h"] = quant(h.runtime, 0.1)
    code = current_code(h)
    v["fault_code"] = code[0] if code else 0
    return v, code


def current_code(h):
    cat = h.lockout or (h.prot_code if (h.kind == "gas_boiler" or
                                        h.t_now < h.prot_until) else None)
    if not cat:
        return None
    codes = h.p["codes"]
    if cat not in codes:
        return None
    num, text = codes[cat]
    return (num, cat, text)


# --------------------------------------------------------------------------- main loop

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--households", type=int, default=300)
    ap.add_argument("--days", type=int, default=10)
    ap.add_argument("--every", type=int, default=120, help="seconds between readings (60 or 120)")
    ap.add_argument("--start", default="2026-01-08", help="first local (UTC+8) day, YYYY-MM-DD")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "out"))
    args = ap.parse_args()
    if args.every % DT != 0 and DT % args.every != 0:
        sys.exit("--every must be a multiple of 60 s")
    os.makedirs(args.out, exist_ok=True)
    rng = random.Random(args.seed)

    start_local = datetime.strptime(args.start, "%Y-%m-%d").replace(tzinfo=BJ)
    sim_start_local = start_local - timedelta(days=SPIN_DAYS)
    sim_start_ms = int(sim_start_local.timestamp() * 1000)
    out_start = SPIN_DAYS * DAY                  # seconds from the simulation start
    out_end = out_start + args.days * DAY
    n_steps = out_end // DT

    villages_of = {}
    for tw, vs in TOWNSHIPS:
        for v in vs:
            villages_of[v] = tw
    vids = list(villages_of)
    order = vids[:]
    rng.shuffle(order)
    vil_type = {v: ("elec" if i < 7 else "gas") for i, v in enumerate(order)}

    sys.stderr.write("weather...\n")
    weather = Weather(rng, n_steps, sim_start_local, out_start, args.days, vids)
    homes = make_fleet(rng, args.households, villages_of, vil_type,
                       ["indep-hp-a", "indep-hp-b", "indep-hp-c"],
                       ["indep-boiler-a", "indep-boiler-b", "indep-boiler-c"])
    faults, vfaults, traps = plan(args, rng, homes, weather, out_start, out_end,
                                  villages_of, vil_type)
    by_village = {}
    for h in homes:
        by_village.setdefault(h.village, []).append(h)
    complaints = []
    vcomplaints = []
    extra_faults = []
    for h in homes:
        h.extra = None

    def on_complaint(h, fl, t):
        for f in fl:
            if f["scope"] == "device" and "complaint_s" not in f:
                f["complaint_s"] = t
                if f["end_s"] == INF or f["end_s"] > t:
                    f["end_s"] = t + h.rng.uniform(2.0, 6.0) * HOUR
                    f["ended_by"] = "repair after complaint"
            elif f["scope"] == "village":
                f.setdefault("complaints", []).append((h.device_id, t))

    every = args.every
    for h in homes:
        h.next_report = out_start + h.phase * every
        h.mdot_now = 0.0
        h.t_now = 0
        h.sp_now = h.sp_day
        h.target = 40.0
        h.wp = 1.5
        h.pcomp = 0.0
        h.qem = 0.0
        h.code_first = None
        h.win_i = 0
        h.dhw_i = 0
        h.window_events.sort()
        h.dhw_events.sort()
        h.antifreeze = False

    out_path = os.path.join(args.out, "telemetry.jsonl")
    fo = open(out_path, "w")
    lines_written = 0
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    sys.stderr.write("simulating %d households x %d days (%d steps)...\n"
                     % (len(homes), args.days, n_steps))
    for k in range(n_steps):
        t = k * DT
        lh = weather.local_h[k]
        gs = weather.gsouth[k]
        wind = weather.wind[k]
        batch = []
        vctx = {}
        for vf in vfaults:
            if vf["start"] <= t < vf["end_s"]:
                vctx.setdefault(vf["village"], []).append(vf)
        for h in homes:
            h.t_now = t
            if t < h.installed_at:
                # not yet installed: an unheated house (kept at its starting temperature)
                continue
            to = weather.t_out[h.village][k]
            rh = weather.rh[h.village][k]
            power = True
            gas = 20.0 + 0.5 * math.sin(t / 5000.0 + h.idx % 7)
            vact = vctx.get(h.village, ())
            for vf in vact:
                if vf["kind"] == "village_power_outage":
                    power = False
                elif vf["kind"] == "village_gas_pressure_drop":
                    el = t - vf["start"]
                    rem = vf["end_s"] - t
                    dip = min(1.0, el / 3600.0, rem / 1800.0)
                    gas = 20.0 - (20.0 - vf["p_low"]) * dip
            ctx = {"power": power, "gas": gas}
            # window airing
            we = h.window_events
            while h.win_i < len(we) and we[h.win_i][0] < t + DT:
                if we[h.win_i][0] >= t - DT:
                    h.win_open_until = we[h.win_i][1]
                h.win_i += 1
            # DHW
            if h.kind == "gas_boiler":
                de = h.dhw_events
                while h.dhw_i < len(de) and de[h.dhw_i][0] < t + DT:
                    if de[h.dhw_i][0] >= t - DT:
                        h.dhw_until = de[h.dhw_i][1]
                    h.dhw_i += 1
                mdot = step_boiler(h, k, t, to, gs, lh, ctx)
            else:
                mdot = step_hp(h, k, t, to, rh, gs, lh, ctx)
            h.mdot_now = mdot
            step_house(h, t, to, gs, wind, lh)
            # a lockout with no planned fault behind it (three random ignition failures, a
            # boiler still locked out after the village gas drop, a protection lockout) is a
            # fault of its own in the ground truth
            f = h.fault
            planned = f is not None and f["start"] <= t < f["end_s"]
            ex = h.extra
            if ex is not None and t >= ex["end_s"] and not ex.get("cleared"):
                ex["cleared"] = True
                h.lockout = None
                h.prot = []
                h.prot_code = None if h.prot_code != "gas_supply" else h.prot_code
                h.fails_in_demand = 0
            if h.lockout and not planned and not vact and t >= out_start and \
                    not (h.commission and t < h.commission[1] + DT) and \
                    (ex is None or t >= ex["end_s"]):
                after_gas = any(vf["kind"] == "village_gas_pressure_drop" and
                                vf["village"] == h.village and
                                vf["end_s"] <= t < vf["end_s"] + 2 * HOUR for vf in vfaults)
                kind = ("gb_lockout_after_gas_drop" if after_gas else "gb_random_lockout") \
                    if h.kind == "gas_boiler" else "hp_random_lockout"
                ex = dict(id="F-%s-%s-%d" % (kind, h.device_id, t), scope="device", kind=kind,
                          device=h.device_id, village=h.village, township=h.township,
                          start=t, end_s=INF, coded=True, code_first_s=t)
                code = current_code(h)
                ex["code_first"] = {"code": code[0], "category": code[1]} if code else None
                h.extra = ex
                extra_faults.append(ex)
            # residents
            fl = []
            if planned and f["kind"] in COMFORT_FAULTS:
                fl.append(f)
            if ex is not None and ex["start"] <= t < ex["end_s"]:
                fl.append(ex)
            for vf in vact:
                if vf["kind"] == "village_power_outage" or h.kind == "gas_boiler":
                    fl.append(vf)
            if t < out_start:
                h.ta_sum = getattr(h, "ta_sum", 0.0) + h.Ta
                h.ta_n = getattr(h, "ta_n", 0) + 1
            elif t == out_start and getattr(h, "ta_n", 0):
                h.comfort = min(h.comfort, h.ta_sum / h.ta_n - 2.0)
            if t >= out_start and not (h.commission and t < h.commission[1] + DAY):
                resident_step(h, t, lh, fl, complaints, on_complaint)
            # codes seen during a fault
            if t >= out_start:
                code = current_code(h)
                if code and f and f["start"] <= t < f["end_s"] and "code_first_s" not in f:
                    f["code_first_s"] = t
                    f["code_first"] = {"code": code[0], "category": code[1]}
                if code:
                    for vf in vact:
                        vf.setdefault("codes", set()).add((h.device_id, code[1]))
            # resident resets a lockout now and then
            rec = f if planned else (ex if ex is not None and ex["start"] <= t < ex["end_s"]
                                     else None)
            if h.lockout and h.rng.random() < 0.004 and resident_state(h, lh, t) == "home" \
                    and (rec is None or len(rec.get("resident_resets_s", [])) < 2):
                h.lockout = None
                h.prot = []
                h.fails_in_demand = 0
                if rec is not None:
                    rec.setdefault("resident_resets_s", []).append(t)
                    if rec is ex:
                        ex["end_s"] = t               # the reset cured it
                        ex["ended_by"] = "resident reset the lockout"
                        ex["cleared"] = True
            # readings
            if t + DT <= out_start:
                continue
            while h.next_report < t + DT:
                rt = h.next_report
                h.next_report += every
                if rt < out_start or rt < h.installed_at:
                    continue
                silent = None
                for s, e, why, lost in h.silences:
                    if s <= rt < e:
                        silent = lost
                        break
                if not power:
                    continue                         # box has no power: nothing, no seq
                fk = f["kind"] if (f and f["start"] <= rt < f["end_s"]) else None
                if fk == "hp_breaker_trip":
                    p = h.p
                    v = {}
                    if p["room_on_box"]:
                        v["indoor_temp_c"] = quant(h.Ta + h.bias["room"] + h.rng.gauss(0, 0.05),
                                                   p["room"])
                    if p["meter"]:
                        v["electric_power_w"] = 0
                        v["energy_kwh"] = round(h.energy, 2)
                    if not v:
                        continue                     # every register read fails
                    code = None
                elif fk in ("hp_hung_controller", "gb_hung_controller") and h.last_values:
                    v = h.last_values
                    code = h.last_fault
                else:
                    v, code = reading_values(h, rt, weather.t_out[h.village][k], lh)
                    h.last_values = v
                    h.last_fault = code
                h.seq += 1
                if silent:
                    continue                         # published, lost on the way
                msg = {"v": 1, "device_id": h.device_id,
                       "ts_ms": sim_start_ms + int(rt * 1000) + h.rng.randint(0, 900),
                       "seq": h.seq, "profile": h.profile, "kind": h.kind, "values": v}
                if code:
                    msg["fault"] = {"code": code[0], "category": code[1], "text": code[2]}
                batch.append((msg["ts_ms"], dumps(msg)))
        if batch:
            batch.sort()
            fo.write("\n".join(x[1] for x in batch))
            fo.write("\n")
            lines_written += len(batch)
        if k % 1440 == 0:
            sys.stderr.write("  day %.0f, %d lines\n" % (k / 1440 - SPIN_DAYS, lines_written))
    fo.close()

    # ------------------------------------------------------------------ outputs
    def ms(s):
        if s is None or s == INF:
            return None
        return sim_start_ms + int(s * 1000)

    def local(s):
        if s is None or s == INF:
            return None
        return (sim_start_local + timedelta(seconds=s)).strftime("%m-%d %H:%M")

    devices = []
    for h in homes:
        devices.append({"device_id": h.device_id, "township": h.township, "village": h.village,
                        "kind": h.kind, "vulnerable": h.vulnerable, "tags": ["indep-winter"],
                        "household": "hh-%04d" % h.idx})
    with open(os.path.join(args.out, "devices.json"), "w") as fd:
        json.dump(devices, fd, indent=1)

    tf = []
    home_of = {h.device_id: h for h in homes}
    for f in faults + extra_faults + vfaults:
        end = f["end_s"] if f["end_s"] < out_end else None
        comp = f.get("complaint_s")
        if f["scope"] == "village":
            cl = sorted(f.get("complaints", []), key=lambda x: x[1])
            comp = cl[0][1] if cl else None
        start = f["start"]
        if start >= out_end:
            continue
        rec = {"id": f["id"], "scope": f["scope"], "kind": f["kind"], "device": f["device"],
               "village": f["village"], "township": f.get("township"),
               "profile": home_of[f["device"]].profile if f["device"] else None,
               "coded": bool(f.get("code_first_s") is not None and
                             (comp is None or f["code_first_s"] <= comp)) if f["scope"] == "device"
               else bool(f.get("codes")),
               "designed_coded": f["kind"] in DESIGNED_CODED or f in extra_faults,
               "start_ms": ms(start), "end_ms": ms(end), "complaint_ms": ms(comp),
               "start_local": local(start), "end_local": local(end),
               "complaint_local": local(comp),
               "comfort_fault": f["kind"] in COMFORT_FAULTS or f["scope"] == "village"
               or f in extra_faults}
        if f.get("code_first_s") is not None:
            rec["code_first_ms"] = ms(f["code_first_s"])
            rec["code_first"] = f["code_first"]
        if f.get("noticed_s"):
            rec["noticed_ms"] = ms(min(f["noticed_s"].values()))
        if f.get("ended_by"):
            rec["ended_by"] = f["ended_by"]
        if f.get("resident_resets_s"):
            rec["resident_resets_ms"] = [ms(x) for x in f["resident_resets_s"]]
        if f["scope"] == "village":
            rec["devices"] = [h.device_id for h in by_village[f["village"]]
                              if f["kind"] == "village_power_outage" or h.kind == "gas_boiler"]
            rec["complaints"] = [{"device": d, "ms": ms(x)} for d, x in
                                 sorted(f.get("complaints", []), key=lambda y: y[1])]
            rec["coded_devices"] = sorted({"%s:%s" % c for c in f.get("codes", set())})
        if f["device"]:
            h = home_of[f["device"]]
            rec["room_sensor"] = h.room_sensor
            rec["vulnerable"] = h.vulnerable
        tf.append(rec)
    tf.sort(key=lambda x: x["start_ms"])
    tt = []
    for tr in traps:
        s, e = tr.pop("_s"), tr.pop("_e")
        if s >= out_end or e <= out_start:
            continue
        tr["start_ms"] = ms(max(s, out_start))
        tr["end_ms"] = ms(min(e, out_end))
        tr["start_local"] = local(max(s, out_start))
        tt.append(tr)
    tt.sort(key=lambda x: x["start_ms"])
    truth = {
        "meta": {"generator": "tests/independent-winter/generate.py", "seed": args.seed,
                 "households": args.households, "days": args.days, "every_s": every,
                 "start_ms": ms(out_start), "end_ms": ms(out_end), "timezone": "UTC+8",
                 "lines": lines_written,
                 "weather": {"humid_day": [ms(weather.humid[0]), ms(weather.humid[1])],
                             "cold_wave": [ms(weather.cold_wave[0]), ms(weather.cold_wave[1])],
                             "cold_core": [ms(weather.cold_core[0]), ms(weather.cold_core[1])],
                             "min_outdoor_c": round(min(min(a[out_start // DT:]) for a in
                                                        weather.t_out.values()), 1)},
                 "villages": {v: {"township": villages_of[v], "programme": vil_type[v],
                                  "households": len(by_village.get(v, []))} for v in vids},
                 "profiles": {h.device_id: h.profile for h in homes},
                 "no_room_sensor": sorted(h.device_id for h in homes if not h.room_sensor)},
        "faults": tf,
        "traps": tt,
    }
    with open(os.path.join(args.out, "truth.json"), "w") as fd:
        json.dump(truth, fd, indent=1, ensure_ascii=False)
    nf = len(tf)
    nc = sum(1 for x in tf if x["complaint_ms"])
    sys.stderr.write("wrote %d lines, %d faults (%d with a complaint), %d traps to %s\n"
                     % (lines_written, nf, nc, len(tt), args.out))


if __name__ == "__main__":
    main()
