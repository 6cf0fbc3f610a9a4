import KilnGraph

/// The order in which forward steps run.
///
/// Contract: returns a topological order of the nodes. Among the ready nodes it prefers the one that frees
/// the most bytes (its inputs' last consumer) and allocates the fewest, which keeps fewer buffers alive at
/// once; ties go to creation order, so the schedule is deterministic.
enum Schedule {
    static func order(_ nodes: [FunctionNode]) -> [FunctionNode] {
        // Creation order is topological already; a memory-aware list scheduler refines it.
        guard nodes.count > 2 else { return nodes }
        let index = Dictionary(uniqueKeysWithValues: nodes.enumerated().map { (ObjectIdentifier($1), $0) })
        var consumers = [[Int]](repeating: [], count: nodes.count)
        var pending = [Int](repeating: 0, count: nodes.count)
        // Remaining consumers of each producer's outputs, to know when an input dies.
        var remainingUses = [Int](repeating: 0, count: nodes.count)
        for (i, n) in nodes.enumerated() {
            var producers = Set<Int>()
            for v in n.inputs { if let p = v.parent, let j = index[ObjectIdentifier(p)] { producers.insert(j) } }
            pending[i] = producers.count
            for j in producers { consumers[j].append(i); remainingUses[j] += 1 }
        }
        let outBytes = nodes.map { $0.outputTypes.reduce(0) { $0 + $1.byteCount } }
        var ready = Set((0..<nodes.count).filter { pending[$0] == 0 })
        var order: [FunctionNode] = []
        order.reserveCapacity(nodes.count)
        while !ready.isEmpty {
            var best = -1
            var bestScore = Int.min
            for i in ready {
                var freed = 0
                var seen = Set<Int>()
                for v in nodes[i].inputs {
                    if let p = v.parent, let j = index[ObjectIdentifier(p)], seen.insert(j).inserted, remainingUses[j] == 1 {
                        freed += outBytes[j]
                    }
                }
                let score = freed - outBytes[i]
                if score > bestScore || (score == bestScore && i < best) { best = i; bestScore = score }
            }
            ready.remove(best)
            order.append(nodes[best])
            var seen = Set<Int>()
            for v in nodes[best].inputs {
                if let p = v.parent, let j = index[ObjectIdentifier(p)], seen.insert(j).inserted { remainingUses[j] -= 1 }
            }
            for c in consumers[best] {
                pending[c] -= 1
                if pending[c] == 0 { ready.insert(c) }
            }
        }
        return order.count == nodes.count ? order : nodes
    }
}
