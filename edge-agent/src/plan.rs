//! Poll planning: merges a profile's registers into the fewest Modbus read requests within the
//! protocol's limits (125 registers or 2000 bits per read), bridging gaps up to `max_gap`.

use crate::profile::{Profile, RegisterKind};

/// One read request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub kind: RegisterKind,
    pub start: u16,
    pub count: u16,
}

impl Block {
    fn end(&self) -> u32 {
        u32::from(self.start) + u32::from(self.count)
    }
}

/// The read requests of one poll cycle, and for each register where its data sits.
#[derive(Debug, Clone, PartialEq)]
pub struct PollPlan {
    pub blocks: Vec<Block>,
    /// For each register of the profile (same index): (block index, offset in the block).
    pub slots: Vec<(usize, usize)>,
}

impl PollPlan {
    /// Plans the reads for `profile`. Registers of one kind are sorted by address and merged
    /// while the merged block stays within the read limit and the gap between them is at most
    /// `max_gap` unused registers (bits, for coils and discrete inputs).
    pub fn new(profile: &Profile, max_gap: u16) -> PollPlan {
        let mut order: Vec<usize> = (0..profile.registers.len()).collect();
        order.sort_by_key(|&i| {
            let r = &profile.registers[i];
            (r.kind, r.address)
        });
        let mut blocks: Vec<Block> = Vec::new();
        let mut slots = vec![(0, 0); profile.registers.len()];
        for i in order {
            let register = &profile.registers[i];
            let span = register.span();
            let merged = blocks.last_mut().filter(|b| {
                b.kind == register.kind
                    && span.start <= b.end() + u32::from(max_gap)
                    && span.end.max(b.end()) - u32::from(b.start)
                        <= u32::from(register.kind.max_per_read())
            });
            match merged {
                Some(block) => {
                    let end = span.end.max(block.end());
                    // Fits in u16: bounded by max_per_read above.
                    block.count = (end - u32::from(block.start)) as u16;
                }
                None => blocks.push(Block {
                    kind: register.kind,
                    start: register.address,
                    count: register.value_type.width(),
                }),
            }
            let index = blocks.len() - 1;
            slots[i] = (index, usize::from(register.address - blocks[index].start));
        }
        PollPlan { blocks, slots }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(registers: &[(&str, &str, u32, &str)]) -> Profile {
        let mut text =
            String::from("id = \"p\"\nbrand = \"b\"\nmodel = \"m\"\nkind = \"heat_pump\"\n");
        for (name, kind, address, ty) in registers {
            text.push_str(&format!(
                "[[register]]\nname = \"{name}\"\nkind = \"{kind}\"\naddress = {address}\ntype = \"{ty}\"\n"
            ));
            if *ty == "bit" {
                text.push_str("bit = 0\n");
            }
        }
        Profile::parse(&text, "test").expect("valid profile")
    }

    #[test]
    fn neighbours_merge_and_gaps_split() {
        let p = profile(&[
            ("indoor_temp_c", "input", 0, "i16"),
            ("outdoor_temp_c", "input", 1, "i16"),
            ("energy_kwh", "input", 5, "u32"),
            ("flow_temp_c", "input", 100, "i16"),
            ("setpoint_c", "holding", 0, "i16"),
        ]);
        let plan = PollPlan::new(&p, 8);
        assert_eq!(
            plan.blocks,
            vec![
                Block {
                    kind: RegisterKind::Input,
                    start: 0,
                    count: 7
                },
                Block {
                    kind: RegisterKind::Input,
                    start: 100,
                    count: 1
                },
                Block {
                    kind: RegisterKind::Holding,
                    start: 0,
                    count: 1
                },
            ]
        );
        assert_eq!(plan.slots[2], (0, 5));
        assert_eq!(PollPlan::new(&p, 2).blocks.len(), 4);
    }

    #[test]
    fn blocks_never_exceed_125_registers() {
        let p = profile(&[
            ("indoor_temp_c", "holding", 0, "i16"),
            ("outdoor_temp_c", "holding", 124, "i16"),
            ("energy_kwh", "holding", 125, "u32"),
        ]);
        let plan = PollPlan::new(&p, 200);
        assert_eq!(plan.blocks.len(), 2);
        assert!(plan.blocks.iter().all(|b| b.count <= 125));
        assert_eq!(plan.slots[2], (1, 0));
    }

    #[test]
    fn shipped_profiles_need_few_requests() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles");
        for (file, expected) in [
            ("aurora-ashp.toml", 2),
            ("beifeng-ashp.toml", 1),
            ("huanre-boiler.toml", 2),
            ("lingyun-boiler.toml", 2),
        ] {
            let p = Profile::load(&dir.join(file)).expect("shipped profile");
            assert_eq!(PollPlan::new(&p, 8).blocks.len(), expected, "{file}");
        }
    }
}
