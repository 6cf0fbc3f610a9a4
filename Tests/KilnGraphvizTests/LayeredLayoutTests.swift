import Foundation
import Testing
@testable import KilnGraphviz

extension ViewerTests {
@Suite struct LayeredLayoutTests {
    typealias Node = LayeredLayout.Node

    /// A random DAG: node i reads 1-3 earlier nodes, mostly recent ones (like a network with skips), with
    /// mixed box and ellipse sizes. Deterministic (a fixed linear congruential generator).
    static func randomDAG(_ n: Int, seed: UInt64) -> (nodes: [Node], edges: [(tail: Int, head: Int)]) {
        var state = seed
        func next(_ bound: Int) -> Int {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int((state >> 33) % UInt64(bound))
        }
        var nodes: [Node] = []
        var edges: [(tail: Int, head: Int)] = []
        for i in 0..<n {
            nodes.append(Node(width: Double(54 + next(120)), height: Double(36 + next(40)),
                              shape: next(3) == 0 ? .ellipse : .box))
            guard i > 0, next(10) > 0 else { continue }     // about one node in ten is a source
            for _ in 0..<(1 + next(3)) {
                let back = next(8) == 0 ? 1 + next(i) : 1 + next(min(i, 4))
                edges.append((i - back, i))
            }
        }
        return (nodes, edges)
    }

    /// Checks the contract: heads below tails, no overlap within a rank, ranks apart, routes on the outlines.
    static func checkContract(_ l: LayeredLayout, _ nodes: [Node], _ edges: [(tail: Int, head: Int)],
                              separation: Double = 18) {
        for e in edges {
            #expect(l.rank[e.head] > l.rank[e.tail], "edge \(e.tail)->\(e.head)")
            #expect(l.center[e.head].y < l.center[e.tail].y)
        }
        var byRank: [Int: [Int]] = [:]
        for i in nodes.indices { byRank[l.rank[i], default: []].append(i) }
        for (r, members) in byRank {
            let sorted = members.sorted { l.center[$0].x < l.center[$1].x }
            for (a, b) in zip(sorted, sorted.dropFirst()) {
                let gap = (l.center[b].x - nodes[b].width / 2) - (l.center[a].x + nodes[a].width / 2)
                #expect(gap >= separation - 1e-6, "rank \(r): nodes \(a) and \(b) are \(gap) pt apart")
            }
            let y = l.center[members[0]].y
            #expect(members.allSatisfy { abs(l.center[$0].y - y) < 1e-9 }, "rank \(r) is not one row")
        }
        for i in nodes.indices {
            #expect(l.center[i].x - nodes[i].width / 2 >= -1e-6 && l.center[i].x + nodes[i].width / 2 <= l.width + 1e-6)
            #expect(l.center[i].y - nodes[i].height / 2 >= -1e-6 && l.center[i].y + nodes[i].height / 2 <= l.height + 1e-6)
        }
        for (k, e) in edges.enumerated() {
            let route = l.routes[k]
            #expect(route.count == 2 + 2 * (l.rank[e.head] - l.rank[e.tail] - 1))
            #expect(onOutline(route[0], nodes[e.tail], l.center[e.tail]), "edge \(k) starts off its tail's outline")
            #expect(onOutline(route[route.count - 1], nodes[e.head], l.center[e.head]), "edge \(k) ends off its head's outline")
        }
    }

    static func onOutline(_ p: LayeredLayout.Point, _ n: Node, _ c: LayeredLayout.Point) -> Bool {
        let dx = abs(p.x - c.x), dy = abs(p.y - c.y), a = n.width / 2, b = n.height / 2
        switch n.shape {
        case .box: return (abs(dx - a) < 1e-6 && dy <= b + 1e-6) || (abs(dy - b) < 1e-6 && dx <= a + 1e-6)
        case .ellipse: return abs((dx / a) * (dx / a) + (dy / b) * (dy / b) - 1) < 1e-6
        }
    }

    @Test func randomGraphsKeepTheContract() throws {
        for seed in [1, 2, 3] as [UInt64] {
            let (nodes, edges) = Self.randomDAG(400, seed: seed)
            let l = try LayeredLayout.compute(nodes: nodes, edges: edges)
            Self.checkContract(l, nodes, edges)
        }
    }

    @Test func longEdgesPassBetweenTheBoxesOfTheRanksTheyCross() throws {
        let (nodes, edges) = Self.randomDAG(300, seed: 7)
        let l = try LayeredLayout.compute(nodes: nodes, edges: edges)
        var long = 0
        for (k, e) in edges.enumerated() where l.rank[e.head] - l.rank[e.tail] > 1 {
            long += 1
            // From the first bend's top to the last bend's bottom the route touches no box at all.
            let inner = Array(l.routes[k].dropFirst().dropLast())
            for (a, b) in zip(inner, inner.dropFirst()) {
                for i in nodes.indices {
                    #expect(!Self.segment(a, b, crosses: nodes[i], at: l.center[i]),
                            "edge \(e.tail)->\(e.head) crosses node \(i)")
                }
            }
        }
        #expect(long > 20, "the random graph should have long edges to check (\(long))")
    }

    /// Whether the segment a-b meets the node's bounding box (Liang-Barsky clipping).
    static func segment(_ a: LayeredLayout.Point, _ b: LayeredLayout.Point, crosses n: Node, at c: LayeredLayout.Point) -> Bool {
        var t0 = 0.0, t1 = 1.0
        let dx = b.x - a.x, dy = b.y - a.y
        for (p, q) in [(-dx, a.x - (c.x - n.width / 2)), (dx, (c.x + n.width / 2) - a.x),
                       (-dy, a.y - (c.y - n.height / 2)), (dy, (c.y + n.height / 2) - a.y)] {
            if p == 0 { if q < 0 { return false } ; continue }
            let r = q / p
            if p < 0 { t0 = max(t0, r) } else { t1 = min(t1, r) }
            if t0 > t1 { return false }
        }
        return true
    }

    @Test func aChainIsAStraightColumn() throws {
        let nodes = (0..<50).map { _ in Node(width: 80, height: 40) }
        let edges = (1..<50).map { (tail: $0 - 1, head: $0) }
        let l = try LayeredLayout.compute(nodes: nodes, edges: edges)
        #expect(l.rank == Array(0..<50))
        #expect(l.center.allSatisfy { $0.x == 40 })
        #expect(l.width == 80)
        #expect(l.height == 50 * 40 + 49 * 36)
        #expect(l.center[0].y == l.height - 20)   // rank 0 at the top
        // The route runs from the bottom of one box to the top of the next.
        #expect(l.routes[0] == [.init(x: 40, y: l.center[0].y - 20), .init(x: 40, y: l.center[1].y + 20)])
    }

    /// The generated benchmark's block (affine -> relu -> concat(skip) -> affine): the skip edge bends beside
    /// the chain and the blocks do not drift sideways.
    @Test func residualBlocksDoNotDrift() throws {
        var nodes = [Node(width: 54, height: 36, shape: .ellipse)]
        var edges: [(tail: Int, head: Int)] = []
        var h = 0
        for _ in 0..<200 {
            let a = nodes.count, r = a + 1, c = a + 2, o = a + 3
            nodes += [Node(width: 70, height: 60), Node(width: 54, height: 36), Node(width: 100, height: 36),
                      Node(width: 70, height: 60)]
            edges += [(h, a), (a, r), (h, c), (r, c), (c, o)]
            h = o
        }
        let l = try LayeredLayout.compute(nodes: nodes, edges: edges)
        Self.checkContract(l, nodes, edges)
        #expect(l.width < 300, "the drawing drifted to \(l.width) pt wide")
        #expect(l.rank[h] == 800)
    }

    @Test func aSourceSitsJustAboveItsFirstConsumer() throws {
        // x -> a -> b -> c -> loss <- label: the label input is drawn next to c, not at the top.
        let nodes = (0..<6).map { _ in Node(width: 60, height: 36) }
        let edges: [(tail: Int, head: Int)] = [(0, 1), (1, 2), (2, 3), (3, 4), (5, 4)]
        let l = try LayeredLayout.compute(nodes: nodes, edges: edges)
        #expect(l.rank == [0, 1, 2, 3, 4, 3])
        #expect(l.routes[4].count == 2)
        Self.checkContract(l, nodes, edges)
    }

    @Test func bendPointsAreCapped() throws {
        // Node 0 feeds every node of a 300-deep chain: 44,551 bend points uncapped.
        let n = 300
        let nodes = (0..<n).map { _ in Node(width: 60, height: 36) }
        var edges = (2..<n).map { (tail: $0 - 1, head: $0) }
        edges += (1..<n).map { (tail: 0, head: $0) }
        let l = try LayeredLayout.compute(nodes: nodes, edges: edges, maxBendPoints: 1000)
        let bends = l.routes.reduce(0) { $0 + ($1.count - 2) / 2 }
        #expect(bends <= 1000 && bends > 900)
        for e in edges { #expect(l.rank[e.head] > l.rank[e.tail]) }
        // The shortest edges got their bends (edge n-1 is 0 -> 2); the longest is straight.
        #expect(l.routes[n - 1].count == 4)
        #expect(l.routes[edges.count - 1].count == 2)
    }

    @Test func cyclesAndBadEdgesThrow() throws {
        let nodes = (0..<3).map { _ in Node(width: 60, height: 36) }
        #expect(throws: LayeredLayoutError.cycle(node: 1)) {
            try LayeredLayout.compute(nodes: nodes, edges: [(0, 1), (1, 2), (2, 1)])
        }
        #expect(throws: LayeredLayoutError.cycle(node: 0)) { try LayeredLayout.compute(nodes: nodes, edges: [(0, 0)]) }
        #expect(throws: LayeredLayoutError.badEdge(index: 1, tail: 1, head: 3, nodeCount: 3)) {
            try LayeredLayout.compute(nodes: nodes, edges: [(0, 1), (1, 3)])
        }
        #expect("\(LayeredLayoutError.cycle(node: 4))".contains("cycle through node 4"))
        let empty = try LayeredLayout.compute(nodes: [], edges: [])
        #expect(empty.width == 0 && empty.height == 0 && empty.center.isEmpty)
    }

    @Test func separationIsTheClosestFeasiblePlacement() {
        // Three nodes wanting the same x spread symmetrically around it.
        #expect(LayeredLayout.closestSeparated([0, 0, 0], [0, 10, 10]) == [-10, 0, 10])
        // Feasible wishes are kept.
        #expect(LayeredLayout.closestSeparated([0, 50, 60], [0, 10, 10]) == [0, 50, 60])
        // Only the crowded pair moves: 50 and 52 with 10 apart become 46 and 56.
        #expect(LayeredLayout.closestSeparated([0, 50, 52], [0, 10, 10]) == [0, 46, 56])
    }
}
}
