// Once, on db1, after the three members started with deploy/mongodb/mongod.conf:
//   mongosh --tls "mongodb://db1:27017" deploy/mongodb/replica-set.js
// then create the xiaoqu user (docs/operations.md §3) through the primary.
rs.initiate({
  _id: "rs0",
  members: [
    {_id: 0, host: "db1:27017", priority: 2},
    {_id: 1, host: "db2:27017"},
    {_id: 2, host: "db3:27017"},
  ],
});
