import KilnGraph

/// Human-readable and JSON views of a plan. The text dump is stable (golden files in Plans/ compare it
/// byte for byte), so it prints nothing that depends on addresses or time.
extension Plan {
    public func dump(memoryMapWidth: Int = 64) -> String {
        let lifetimes = self.lifetimes
        let live = Liveness.liveBytes(lifetimes, steps: steps.count)
        var freedAt = [Int: [Int]]()
        for l in lifetimes { freedAt[l.last, default: []].append(l.buffer) }
        var out = "plan \(mode.rawValue)  clear_buffer=\(options.clearBuffer)  clear_no_need_grad=\(options.clearNoNeedGrad)\n"
        if options.precision != .float { out.insert(contentsOf: "  precision=\(options.precision.rawValue)", at: out.index(before: out.endIndex)) }
        if threads != 1 { out.insert(contentsOf: "  threads=\(threads)", at: out.index(before: out.endIndex)) }
        let rebuilt = recomputeStepCount
        out += "steps \(steps.count) (forward \(forwardStepCount)\(rebuilt > 0 ? ", recompute \(rebuilt)" : ""))  buffers \(buffers.count)\n"
        for n in notes { out += "note: \(n)\n" }
        out += "\n"
        for (i, s) in steps.enumerated() {
            let head = "\(pad(String(i), 4)) \(pad(s.kind.rawValue, 8)) \(pad(s.function, 22)) \(s.node)"
            out += head + "\n"
            if !s.inputs.isEmpty { out += "       in   " + s.inputs.map(describe).joined(separator: ", ") + "\n" }
            let outs = s.outputs.enumerated().map { j, b in (s.accumulate[j] ? "+=" : "") + describe(b) }
            if !outs.isEmpty { out += "       out  " + outs.joined(separator: ", ") + "\n" }
            if let w = s.workspace { out += "       ws   " + describe(w) + "\n" }
            if let st = s.staging {
                out += "       f32  " + describe(st) + ": " + s.staged.map { v in
                    let dir = v.load && v.store ? "<->" : v.load ? "<-" : "->"
                    return "\(dir)\(buffers[v.buffer].name)+\(v.offset)"
                }.joined(separator: ", ") + "\n"
            }
            if !s.rounded.isEmpty {
                out += "       f16  rounds " + s.rounded.map { buffers[$0].name }.joined(separator: ", ") + "\n"
            }
            for (k, b) in gradientBuckets.enumerated() where b.readyAfterStep == i {
                out += "       all-reduce bucket \(k) starts (\(b.buffers.count) gradient\(b.buffers.count == 1 ? "" : "s"), \(formatBytes(b.bytes)))\n"
            }
            var tail = "       live \(formatBytes(live[i]))"
            if let f = freedAt[i], !f.isEmpty { tail += "  frees " + f.sorted().map { buffers[$0].name }.joined(separator: ", ") }
            out += tail + "\n"
        }
        out += "\n" + summary() + "\n"
        out += bucketTable()
        out += memoryMap(lifetimes, width: memoryMapWidth)
        return out
    }

    func describe(_ id: Int) -> String {
        let b = buffers[id]
        var place = b.offset.map { "@\($0)" } ?? "(\(b.kind.rawValue))"
        if let r = aliases[id] { place += " in place of \(buffers[r].name)" }
        return "\(b.name) \(b.type)\(b.codes.map { " as \($0)" } ?? "")\(b.layout.map { " in \($0)" } ?? "") \(place)"
    }

    public func summary() -> String {
        let ratio = lowerBoundBytes > 0 ? Double(arenaBytes) / Double(lowerBoundBytes) : 1
        let saving = arenaBytes > 0 ? Double(naiveBytes) / Double(arenaBytes) : 1
        return """
        arena_bytes        \(arenaBytes) (\(formatBytes(arenaBytes)), placement \(placementAlgorithm))
        lower_bound_bytes  \(lowerBoundBytes) (\(formatBytes(lowerBoundBytes)); arena / lower bound = \(fixed(ratio, 3)))
        naive_bytes        \(naiveBytes) (\(formatBytes(naiveBytes)); naive / arena = \(fixed(saving, 2)))
        persistent_bytes   \(persistentBytes) (\(formatBytes(persistentBytes)))

        """
    }

    /// The gradient buckets of a distributed training plan: where each sits, what it holds, when its
    /// all-reduce starts (after a backward step) and ends (before the solver's update, which waits for all).
    public func bucketTable() -> String {
        guard !gradientBuckets.isEmpty else { return "" }
        let total = gradientBuckets.reduce(0) { $0 + $1.bytes }
        var out = "gradient buckets   \(gradientBuckets.count) (\(formatBytes(total)); at most \(formatBytes(options.gradientBucketBytes ?? 0)) each unless one gradient is larger; all-reduce starts after the step named, ends before the update)\n"
        for (k, b) in gradientBuckets.enumerated() {
            let names = b.buffers.map { buffers[$0].name }
            let shown = names.count > 4 ? names.prefix(3).joined(separator: ", ") + ", ... \(names.last!)" : names.joined(separator: ", ")
            out += "  bucket \(pad(String(k), 3)) @\(pad(String(b.offset), 9)) \(pad(formatBytes(b.bytes), 10)) starts after step \(pad(String(b.readyAfterStep), 5)) \(shown)\n"
        }
        return out + "\n"
    }

    /// Time (down, one row per step, or per group of steps for long plans) by arena offset (across): which
    /// bytes hold something.
    func memoryMap(_ lifetimes: [BufferLifetime], width: Int, maxRows: Int = 64) -> String {
        guard arenaBytes > 0, !steps.isEmpty else { return "memory map: empty arena\n" }
        let group = (steps.count + maxRows - 1) / maxRows
        let unit = group == 1 ? "step" : "\(group) steps"
        let coded = buffers.contains { $0.codes != nil }, padded = buffers.contains { $0.layout != nil }
        var out = "memory map (rows: \(unit) each, columns: arena offset 0..\(formatBytes(arenaBytes)); # live, "
            + (coded ? "8 live 8-bit codes, " : "") + (padded ? "p live padded planes, " : "") + ". free)\n"
        let cell = max(1, (arenaBytes + width - 1) / width)
        let rows = (steps.count + group - 1) / group
        var grid = [[Character]](repeating: [Character](repeating: ".", count: width), count: rows)
        for l in lifetimes {
            guard let off = buffers[l.buffer].offset else { continue }
            let a = off / cell, e = min(width - 1, (off + l.bytes - 1) / cell)
            guard a <= e else { continue }
            let mark: Character = buffers[l.buffer].codes != nil ? "8" : buffers[l.buffer].layout != nil ? "p" : "#"
            for r in (l.first / group)...(l.last / group) { for c in a...e where grid[r][c] != "#" { grid[r][c] = mark } }
        }
        for r in 0..<rows { out += pad(String(r * group), 5) + " |" + String(grid[r]) + "|\n" }
        return out
    }

    /// The figures of the DESIGN contract and every step, as JSON.
    public func json() -> JSON {
        let lifetimes = self.lifetimes
        let live = Liveness.liveBytes(lifetimes, steps: steps.count)
        let stepsJSON: [JSON] = steps.enumerated().map { i, s in
            .object([
                ("index", .int(i)), ("kind", .string(s.kind.rawValue)), ("op", .string(s.function)),
                ("node", .string(s.node)),
                ("inputs", .array(s.inputs.map { bufferJSON($0) })),
                ("outputs", .array(s.outputs.enumerated().map { j, b in
                    var o = bufferJSON(b)
                    if case .object(var m) = o { m.append(("accumulate", .bool(s.accumulate[j]))); o = .object(m) }
                    return o
                })),
                ("workspace", s.workspace.map { bufferJSON($0) } ?? .null),
                ("staging", s.staging.map { bufferJSON($0) } ?? .null),
                ("rounded", .array(s.rounded.map { .string(buffers[$0].name) })),
                ("live_bytes", .int(live[i])),
            ])
        }
        return .object([
            ("format", .string("kiln-plan/1")),
            ("mode", .string(mode.rawValue)),
            ("clear_buffer", .bool(options.clearBuffer)),
            ("clear_no_need_grad", .bool(options.clearNoNeedGrad)),
            ("threads", .int(threads)),
            ("arena_bytes", .int(arenaBytes)),
            ("lower_bound_bytes", .int(lowerBoundBytes)),
            ("naive_bytes", .int(naiveBytes)),
            ("persistent_bytes", .int(persistentBytes)),
            ("placement", .string(placementAlgorithm)),
            ("forward_steps", .int(forwardStepCount)),
            ("recompute_steps", .int(recomputeStepCount)),
            ("steps", .array(stepsJSON)),
        ] + (gradientBuckets.isEmpty ? [] : [("gradient_buckets", .array(gradientBuckets.map { b in
            .object([
                ("offset", .int(b.offset)), ("bytes", .int(b.bytes)), ("ready_after_step", .int(b.readyAfterStep)),
                ("gradients", .array(b.buffers.map { .string(buffers[$0].name) })),
            ])
        }))]))
    }

    func bufferJSON(_ id: Int) -> JSON {
        let b = buffers[id]
        return .object([
            ("name", .string(b.name)), ("kind", .string(b.kind.rawValue)),
            ("shape", .array(b.type.shape.map { .int($0) })), ("dtype", .string(b.type.dtype.rawValue)),
            ("offset", b.offset.map { .int($0) } ?? .null), ("size", .int(b.bytes)),
        ] + (b.codes.map { [("codes", JSON.string($0.description))] } ?? [])
            + (b.layout.map { [("layout", JSON.string($0.description))] } ?? []))
    }
}

func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }

func fixed(_ x: Double, _ digits: Int) -> String {
    var p = 1.0
    for _ in 0..<digits { p *= 10 }
    let r = (x * p).rounded() / p
    var s = String(r)
    if let dot = s.firstIndex(of: ".") {
        let decimals = s.distance(from: dot, to: s.endIndex) - 1
        if decimals < digits { s += String(repeating: "0", count: digits - decimals) }
    } else { s += "." + String(repeating: "0", count: digits) }
    return s
}

/// Bytes in binary units with one decimal ("1.5 MiB").
public func formatBytes(_ n: Int) -> String {
    let units = ["B", "KiB", "MiB", "GiB"]
    var v = Double(n)
    var u = 0
    while v >= 1024 && u < units.count - 1 { v /= 1024; u += 1 }
    return u == 0 ? "\(n) B" : "\(fixed(v, 1)) \(units[u])"
}
