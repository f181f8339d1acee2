// When one replica set is not enough (hundreds of communities, the access log and gate
// events in the billions): a sharded cluster, the large collections sharded by community
// so each community's reads and writes stay on one shard. Run through mongos, once:
//   mongosh "mongodb://mongos1:27017/xiaoqu" deploy/mongodb/shard-by-community.js
// Every query of these collections names community_id (tenancy: models/access.py), so
// each is routed to one shard. _id stays unique per shard only: the ids xiaoqu writes are
// globally unique by construction (ObjectIds; "<bridge>:<seq>" for gate events and
// "<bridge>:<scan id>" lines, whose bridge belongs to one community, so a replay lands on
// the same shard and is still refused as a duplicate). The other collections (staff,
// residents, communities, passes, keys, ...) are small: they stay on the primary shard.
sh.enableSharding("xiaoqu");
for (const name of ["access_log", "gate_events", "gate_commands", "gate_alarms", "tickets"]) {
  sh.shardCollection(`xiaoqu.${name}`, {community_id: 1, _id: 1});
}
sh.shardCollection("xiaoqu.messages", {resident_id: 1, _id: 1});  // read per resident
// Keep a large community's data near its people: one zone per region, e.g.
//   sh.addShardToZone("shard-east", "east");
//   sh.updateZoneKeyRange("xiaoqu.access_log", {community_id: "<first id>", _id: MinKey},
//                         {community_id: "<last id>", _id: MaxKey}, "east");
